package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

// onnxDir is the example with the real model, relative to this package.
const onnxDir = "../examples/onnx-matting"

var (
	onnxInstall    sync.Once
	onnxCopy       string // the example's copy the tests run
	onnxInstallErr error
)

// onnxServer returns the path of server.js in a copy of the onnx-matting
// example, its packages installed. It skips t when node or npm is
// missing, unless MATTINGCTL_REQUIRE_E2E is set.
//
// Nothing is written into the checkout: the packages are installed with
// `npm ci --ignore-scripts` into a cache directory outside it, one per
// package-lock.json, once (a later run finds them there); the example's
// files are copied next to the test binaries, with node_modules a link
// to the cache.
func onnxServer(t *testing.T) string {
	t.Helper()
	needTool(t, "node", "nodejs")
	needTool(t, "npm", "npm")
	onnxInstall.Do(func() {
		started := time.Now()
		modules, installed, err := onnxModules()
		if err != nil {
			onnxInstallErr = err
			return
		}
		if installed {
			t.Logf("npm ci --ignore-scripts took %s", time.Since(started).Round(100*time.Millisecond))
		}
		onnxCopy, onnxInstallErr = copyExample(onnxDir, filepath.Join(filepath.Dir(mattingctl), "onnx-matting"), modules)
	})
	if onnxInstallErr != nil {
		t.Fatal(onnxInstallErr)
	}
	return filepath.Join(onnxCopy, "server.js")
}

// onnxModules returns the node_modules directory that package-lock.json
// asks for, in the cache, installing it first if it is not there; true if
// it installed it. Test binaries running at once take turns through a
// lock file, so that one installs and the others wait and reuse it.
func onnxModules() (string, bool, error) {
	lock, err := os.ReadFile(filepath.Join(onnxDir, "package-lock.json"))
	if err != nil {
		return "", false, err
	}
	sum := sha256.Sum256(lock)
	root, err := os.UserCacheDir()
	if err != nil {
		root = os.TempDir()
	}
	dir := filepath.Join(root, "mattingctl-e2e", "onnx-"+hex.EncodeToString(sum[:6]))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", false, err
	}
	f, err := os.OpenFile(dir+".lock", os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return "", false, err
	}
	defer f.Close() // and with it the lock
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return "", false, fmt.Errorf("locking %s: %w", f.Name(), err)
	}
	modules := filepath.Join(dir, "node_modules")
	// Written once npm ci has succeeded: an install cut short is redone
	// (npm ci starts by removing node_modules).
	done := filepath.Join(dir, "installed")
	if _, err := os.Stat(done); err == nil {
		return modules, false, nil
	}
	for _, name := range []string{"package.json", "package-lock.json"} {
		b, err := os.ReadFile(filepath.Join(onnxDir, name))
		if err != nil {
			return "", false, err
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return "", false, err
		}
	}
	cmd := exec.Command("npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", false, fmt.Errorf("npm ci --ignore-scripts in %s: %v\n%s", dir, err, out)
	}
	return modules, true, os.WriteFile(done, nil, 0o644)
}

// copyExample copies the files of the example in src (not its
// node_modules, if a user installed one there) to dst, with node_modules
// a symbolic link to modules, and returns dst.
func copyExample(src, dst, modules string) (string, error) {
	entries, err := os.ReadDir(src)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return "", err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			return "", err
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			return "", err
		}
	}
	return dst, os.Symlink(modules, filepath.Join(dst, "node_modules"))
}

// onnxPhoto is the photo the example ships (512x512, a person on a studio
// backdrop), as a file and decoded.
func onnxPhoto(t *testing.T) ([]byte, image.Image) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(onnxDir, "astronaut.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	img, err := jpeg.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	return data, img
}

// mattingBg is the background the tests ask for.
var mattingBg = color.RGBA{33, 150, 242, 255}

// onnxClient waits long enough for a queue of inferences of seconds each,
// and of a minute each on a machine whose cores are busy.
var onnxClient = &http.Client{Timeout: 5 * time.Minute}

// matteONNX sends one matting request for photo through in's proxy and
// returns the decoded PNG, or an error naming what was wrong.
func matteONNX(in *instance, photo []byte) (image.Image, error) {
	body, _ := json.Marshal(map[string]any{"image": base64.StdEncoding.EncodeToString(photo), "bg": "[33, 150, 242]"})
	resp, err := onnxClient.Post(in.url("/api/matting_base64"), "application/json", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %.200s", resp.Status, raw)
	}
	var reply struct {
		Result string `json:"result"`
	}
	if err := json.Unmarshal(raw, &reply); err != nil {
		return nil, fmt.Errorf("decoding %.200q: %w", raw, err)
	}
	b, err := base64.StdEncoding.DecodeString(reply.Result)
	if err != nil {
		return nil, fmt.Errorf("result is not base64: %w", err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("result is not a PNG: %w", err)
	}
	return img, nil
}

// meanDiff is the mean absolute difference per channel (0-255) between a
// and b over r, or between a and the plain colour c when b is nil.
func meanDiff(a, b image.Image, c color.RGBA, r image.Rectangle) float64 {
	var sum, n float64
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			ar, ag, ab, _ := a.At(x, y).RGBA()
			want := [3]uint32{uint32(c.R), uint32(c.G), uint32(c.B)}
			if b != nil {
				br, bg, bb, _ := b.At(x, y).RGBA()
				want = [3]uint32{br >> 8, bg >> 8, bb >> 8}
			}
			for i, v := range [3]uint32{ar >> 8, ag >> 8, ab >> 8} {
				d := float64(v) - float64(want[i])
				if d < 0 {
					d = -d
				}
				sum += d
				n++
			}
		}
	}
	return sum / n
}

// Regions of the shipped photo: the studio backdrop in the top right
// corner, and the face.
var (
	backdrop = image.Rect(472, 0, 512, 40)
	face     = image.Rect(190, 90, 260, 150)
)

// checkMatted checks a result of the shipped photo: the backdrop is now
// the requested background, and the face is as it was.
func checkMatted(t *testing.T, got, photo image.Image) {
	t.Helper()
	if got.Bounds() != photo.Bounds() {
		t.Fatalf("result is %v, want %v as the photo", got.Bounds(), photo.Bounds())
	}
	if d := meanDiff(photo, nil, mattingBg, backdrop); d < 60 {
		t.Fatalf("the photo's backdrop %v is already near the background colour (mean difference %.1f): the check would prove nothing", backdrop, d)
	}
	if d := meanDiff(got, nil, mattingBg, backdrop); d > 6 {
		t.Errorf("backdrop %v differs from the requested background %v by %.1f on average; want it replaced (at most 6)", backdrop, mattingBg, d)
	}
	if d := meanDiff(got, photo, color.RGBA{}, face); d > 4 {
		t.Errorf("face %v differs from the photo by %.1f on average; want it kept (at most 4)", face, d)
	}
}

// TestONNXMattingExample runs the example with a real neural network (ISNet
// on onnxruntime) as two replicas and checks that a real photo comes back
// matted onto the requested background, by both replicas.
func TestONNXMattingExample(t *testing.T) {
	// Not parallel: the real model takes the CPU for seconds at a time,
	// and the tests beside it would wait.
	server := onnxServer(t)
	data, photo := onnxPhoto(t)
	started := time.Now()
	in := start(t, 2, "--health", "/health", "--", "node", server)
	in.waitReady(2)
	ready := time.Since(started)

	// Two at once: least connections gives each replica one.
	started = time.Now()
	results := make([]image.Image, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = matteONNX(in, data)
		}()
	}
	wg.Wait()
	answered := time.Now()
	matted := answered.Sub(started)
	for i := range results {
		if errs[i] != nil {
			t.Fatalf("request %d: %v", i+1, errs[i])
		}
		checkMatted(t, results[i], photo)
	}
	for _, r := range in.status().Replicas {
		if r.Requests != 1 {
			t.Errorf("%s served %d requests, want 1", r.Name, r.Requests)
		}
	}
	t.Logf("2 replicas ready in %s; 2 images matted at once in %s", ready.Round(10*time.Millisecond), matted.Round(10*time.Millisecond))
	if !t.Failed() {
		onnxRSS.Store(rssAfterInference(t, in, answered))
	}
}

// onnxRSS is a replica's resident memory after one inference, as
// TestONNXMattingExample found it (0 if it did not run, or failed), for
// TestONNXMattingRecycledByMemoryUnderLoad to set --max-memory from:
// loading the model once more to measure it took seconds of both cores.
var onnxRSS atomic.Uint64

// rssAfterInference returns the least resident memory of in's replicas,
// each having answered one inference by answered, from status.
func rssAfterInference(t *testing.T, in *instance, answered time.Time) uint64 {
	t.Helper()
	var rss uint64
	// Status samples memory at most once a second: a sample from more than
	// that after the answer was taken after the inference.
	testutil.WaitFor(t, 10*time.Second, "the replicas' resident memory after an inference in status", func() bool {
		rss = math.MaxUint64
		for _, r := range in.status().Replicas {
			rss = min(rss, r.RSSBytes)
		}
		return time.Since(answered) > 1500*time.Millisecond && rss > 200<<20 // the model alone is more
	})
	return rss
}

// TestONNXMattingRecycledByMemoryUnderLoad sets --max-memory just below the
// resident memory a replica of the real model has after its first
// inference, measured first, and sends requests from two clients: the
// replicas are replaced for memory while loaded, and no request fails.
func TestONNXMattingRecycledByMemoryUnderLoad(t *testing.T) {
	// Not parallel: the real model takes the CPU for seconds at a time;
	// beside other tests an inference outlasted the 30 s stop timeout of
	// the replica it was on.
	server := onnxServer(t)
	data, photo := onnxPhoto(t)
	testStart := time.Now()

	// A replica's resident memory after one inference, from status:
	// TestONNXMattingExample's, or a probe's when it did not run.
	rss := onnxRSS.Load()
	if rss == 0 {
		probe := start(t, 1, "--health", "/health", "--", "node", server)
		probe.waitReady(1)
		if _, err := matteONNX(probe, data); err != nil {
			t.Fatal(err)
		}
		rss = rssAfterInference(t, probe, time.Now())
		_ = probe.cmd.Process.Signal(syscall.SIGTERM)
		if code := probe.wait(30 * time.Second); code != 0 {
			t.Fatalf("mattingctl up exited %d on SIGTERM", code)
		}
	}
	limit := rss * 9 / 10
	t.Logf("a replica's resident memory after one inference: %d MiB; --max-memory %d MiB", rss>>20, limit>>20)

	// A replaced replica finishes the inference it holds: on a busy
	// machine one took over the default 30 s stop timeout, and was cut.
	in := start(t, 2, "--health", "/health", "--max-memory", strconv.FormatUint(limit, 10), "--stop-timeout", "3m",
		"--", "node", server)
	in.waitReady(2)
	loadStart := time.Now()
	var (
		mu       sync.Mutex
		ok       int
		failures []string
		wg       sync.WaitGroup
		stop     = make(chan struct{})
	)
	// One per replica and no more: on a busy machine an inference takes
	// a minute, and a third client's requests queued behind them.
	const clients = 2
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				img, err := matteONNX(in, data)
				if err == nil && img.Bounds() != photo.Bounds() {
					err = fmt.Errorf("result is %v, want %v", img.Bounds(), photo.Bounds())
				}
				mu.Lock()
				if err != nil {
					failures = append(failures, err.Error())
				} else {
					ok++
				}
				mu.Unlock()
			}
		}()
	}
	// Load until a replica has been replaced for memory and its successor
	// has served too.
	recycled := ""
	testutil.WaitFor(t, 3*time.Minute, "a replica replaced for memory that serves again", func() bool {
		for _, r := range in.status().Replicas {
			if r.LastRestart == "memory" && r.Restarts >= 1 && r.State == "ready" && r.Requests >= 1 {
				recycled = r.Name
				return true
			}
		}
		return false
	})
	close(stop)
	wg.Wait()
	if len(failures) > 0 {
		t.Errorf("%d of %d requests failed while replicas were recycled; first: %s", len(failures), ok+len(failures), failures[0])
	}
	restarts := 0
	for _, r := range in.status().Replicas {
		restarts += r.Restarts
		if r.Errors != 0 {
			t.Errorf("%s: %d errors, want 0", r.Name, r.Errors)
		}
	}
	if !strings.Contains(in.stderr.String(), "reason=memory") {
		t.Errorf("the log does not say a replica was replaced for memory:\n%s", in.stderr.String())
	}
	t.Logf("%s replaced for memory; %d requests from %d clients in %s, %d replacements, none failed; the test took %s",
		recycled, ok, clients, time.Since(loadStart).Round(100*time.Millisecond), restarts, time.Since(testStart).Round(100*time.Millisecond))
}

// TestONNXMattingServerUnits runs the example's own unit tests (node:test):
// request parsing, codecs, compositing, the package's resizing and
// normalisation, configuration errors. They need no model.
func TestONNXMattingServerUnits(t *testing.T) {
	t.Parallel()
	dir := filepath.Dir(onnxServer(t))
	cmd := exec.Command("node", "--test", ".")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node --test in %s: %v\n%s", dir, err, out)
	}
	if !strings.Contains(string(out), "# fail 0") {
		t.Fatalf("node --test did not report # fail 0:\n%s", out)
	}
}
