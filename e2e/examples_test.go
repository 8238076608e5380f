package e2e

import (
	"bytes"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

// buildExample builds ./examples/name into a test directory.
func buildExample(t *testing.T, name string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), name)
	out, err := exec.Command("go", "build", "-o", bin, "../examples/"+name).CombinedOutput()
	if err != nil {
		t.Fatalf("building %s: %v\n%s", name, err, out)
	}
	return bin
}

// matte sends n requests with the matting client through in's proxy and
// checks every answer and the PNG written.
func matte(t *testing.T, in *instance, client string, n, c int) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "out.png")
	cmd := exec.Command(client, "-url", in.url("/api/matting_base64"), "-image", "../examples/sample/sample.jpg",
		"-n", strconv.Itoa(n), "-c", strconv.Itoa(c), "-out", out)
	res, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(res), "ok="+strconv.Itoa(n)+" failed=0") {
		t.Fatalf("matting-client: %v\n%s", err, res)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("result is not a PNG: %v", err)
	}
	// The sample's corners are background: they must now be the bg colour
	// the client sends, [33, 150, 242].
	r, g, bl, _ := img.At(2, 2).RGBA()
	if r>>8 != 33 || g>>8 != 150 || bl>>8 != 242 {
		t.Errorf("corner pixel = %d,%d,%d; want the background 33,150,242", r>>8, g>>8, bl>>8)
	}
}

func TestGoMattingServerExample(t *testing.T) {
	t.Parallel()
	server := buildExample(t, "matting-server")
	client := buildExample(t, "matting-client")
	in := start(t, 2, "--health", "/health", "--", server)
	in.waitReady(2)
	matte(t, in, client, 8, 4)
	var served uint64
	for _, r := range in.status().Replicas {
		if r.Requests == 0 {
			t.Errorf("%s served no request", r.Name)
		}
		served += r.Requests
	}
	if served != 8 {
		t.Errorf("replicas served %d requests, want 8", served)
	}
}

// TestFlaskExample runs the original nginx setup's Flask service (OpenCV GrabCut) under
// mattingctl. It needs Debian's python3-flask and python3-opencv; CI
// installs them and sets MATTINGCTL_REQUIRE_E2E so that it cannot skip.
func TestFlaskExample(t *testing.T) {
	t.Parallel()
	needFlaskOpenCV(t)
	client := buildExample(t, "matting-client")
	in := start(t, 2, "--health", "/health", "--", "python3", "../examples/flask-matting/app.py")
	// Flask and OpenCV take a while to import.
	testutil.WaitFor(t, 60*time.Second, "2 ready flask replicas", func() bool {
		st, err := in.tryStatus()
		return err == nil && len(st.Replicas) == 2 && st.Replicas[0].State == "ready" && st.Replicas[1].State == "ready"
	})
	matte(t, in, client, 4, 4)
}

// needFlaskOpenCV skips t, or fails it when CI requires every test to run
// (MATTINGCTL_REQUIRE_E2E), unless python3 has flask and opencv.
func needFlaskOpenCV(t *testing.T) {
	t.Helper()
	probe := exec.Command("python3", "-c", "import sys; sys.path.append('/usr/lib/python3/dist-packages'); import cv2, flask, numpy")
	if out, err := probe.CombinedOutput(); err != nil {
		msg := "python3 with flask and opencv is missing (apt-get install python3-flask python3-opencv): " + strings.TrimSpace(string(out))
		if os.Getenv("MATTINGCTL_REQUIRE_E2E") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}
