package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/template"
	"time"
)

const replicas = 4

// replicaEnv is given to every replica, whoever starts it. A model server
// is one busy thread (Python's GIL); a Go stand-in with a thread per core
// would spin for work and take CPU from the proxies being measured.
var replicaEnv = []string{"GOMAXPROCS=1"}

type environment struct {
	work  string // temporary directory with the binaries
	nginx string
	pin   pinning // CPUs of the client and of what it measures
	// base is the mattingctl binary target mattingctl-base runs, to
	// compare a build with this tree's in the same run (-base).
	base string
}

// proxyProcess is a started proxy under test: how to stop it (and its
// replicas), and which processes are its own, for its CPU time.
type proxyProcess struct {
	stop func()
	pid  int // the proxy's process, nginx's master
	// tree: the proxy's descendants are its own too (nginx's workers).
	// mattingctl's are its replicas, which are not.
	tree bool
}

// measure starts target with fresh replicas, runs the scenario's load
// against it and stops everything. The result has the proxy's own CPU
// time over the load, where /proc has it.
func (e *environment) measure(ctx context.Context, target string, sc scenario, body []byte) (result, error) {
	port, err := freeRange(replicas + 1)
	if err != nil {
		return result{}, err
	}
	var p proxyProcess
	switch target {
	case "mattingctl":
		p, err = e.startMattingctl(port, sc)
	case "mattingctl-base":
		if e.base == "" {
			return result{}, fmt.Errorf("target mattingctl-base needs -base, a mattingctl binary")
		}
		p, err = e.startMattingctlBin(e.base, port, sc)
	case "mattingctl-cap0":
		sc.mattingctl = append(append([]string(nil), sc.mattingctl...), "--max-inflight", "0")
		p, err = e.startMattingctl(port, sc)
	case "mattingctl-batch":
		// Dynamic batching on the original API, whose replicas (the Flask
		// example) answer /batch.
		sc.mattingctl = append(append([]string(nil), sc.mattingctl...), "--batch-path", "/api/matting_base64", "--batch-endpoint", "/batch")
		p, err = e.startMattingctl(port, sc)
	case "nginx-original", "nginx-tuned", "nginx", "nginx-membuf":
		p, err = e.startNginx(port, sc, target)
	case "haproxy", "haproxy-buffered":
		p, err = e.startHaproxy(port, sc, target == "haproxy-buffered")
	default:
		err = fmt.Errorf("unknown target %q", target)
	}
	if err != nil {
		return result{}, err
	}
	defer p.stop()
	url := "http://127.0.0.1:" + strconv.Itoa(port) + "/api/matting_base64"
	if err := waitUp(url, 60*time.Second); err != nil {
		return result{}, fmt.Errorf("%s did not come up: %w", target, err)
	}
	pids, cpuErr := p.pids()
	var before, userBefore time.Duration
	if cpuErr == nil {
		before, userBefore, cpuErr = procCPU(pids)
	}
	var r result
	if sc.pythonClient {
		r, err = runPythonClient(ctx, e.pin.client, url, sc.requests)
	} else {
		r = runLoad(ctx, url, body, sc.clients, sc.requests, sc.keepAlive)
	}
	if err != nil {
		return r, err
	}
	if cpuErr == nil {
		after, user, err := procCPU(pids)
		r.cpu, r.user, r.hasCPU = after-before, user-userBefore, err == nil
	}
	return r, nil
}

// pids are p's own processes, as they are now.
func (p proxyProcess) pids() ([]int, error) {
	if !p.tree {
		return []int{p.pid}, nil
	}
	return procTree(p.pid)
}

func (e *environment) startMattingctl(port int, sc scenario) (proxyProcess, error) {
	return e.startMattingctlBin(filepath.Join(e.work, "mattingctl"), port, sc)
}

func (e *environment) startMattingctlBin(bin string, port int, sc scenario) (proxyProcess, error) {
	home := filepath.Join(e.work, "home-"+strconv.Itoa(port))
	args := append([]string{"up", "--host", "127.0.0.1", "-p", strconv.Itoa(port), "-r", strconv.Itoa(replicas), "--log-level", "warn"}, sc.mattingctl...)
	for _, kv := range replicaEnv {
		args = append(args, "--env", kv)
	}
	if sc.replicaCommand != nil {
		args = append(append(args, "--health", "/health", "--"), sc.replicaCommand...)
	} else {
		args = append(args, "--", filepath.Join(e.work, "fakemodel"))
		args = append(args, sc.replicaArgs...)
	}
	cmd := command(e.pin.servers, bin, args...)
	cmd.Env = append(os.Environ(), "MATTINGCTL_HOME="+home)
	log, err := os.Create(filepath.Join(e.work, "mattingctl-"+strconv.Itoa(port)+".log"))
	if err != nil {
		return proxyProcess{}, err
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return proxyProcess{}, err
	}
	// mattingctl's proxy runs in its supervisor process; its replicas,
	// the supervisor's children, are not counted.
	return proxyProcess{pid: cmd.Process.Pid, stop: func() {
		terminate(cmd)
		log.Close()
	}}, nil
}

// startReplicas starts the fakemodel replicas nginx proxies to.
func (e *environment) startReplicas(base int, sc scenario) (func(), error) {
	var cmds []*exec.Cmd
	stop := func() {
		for _, c := range cmds {
			_ = c.Process.Signal(syscall.SIGTERM)
		}
		for _, c := range cmds {
			_ = c.Wait()
		}
	}
	for i := 0; i < replicas; i++ {
		c := command(e.pin.servers, filepath.Join(e.work, "fakemodel"), sc.replicaArgs...)
		if sc.replicaCommand != nil {
			c = command(e.pin.servers, sc.replicaCommand[0], sc.replicaCommand[1:]...)
		}
		c.Env = append(append(os.Environ(), replicaEnv...), "PORT="+strconv.Itoa(base+i), "MATTINGCTL_REPLICA="+strconv.Itoa(i+1))
		if err := c.Start(); err != nil {
			stop()
			return nil, err
		}
		cmds = append(cmds, c)
	}
	for i := 0; i < replicas; i++ {
		if err := waitUp("http://127.0.0.1:"+strconv.Itoa(base+i)+"/health", 60*time.Second); err != nil {
			stop()
			return nil, err
		}
	}
	return stop, nil
}

// The original nginx.conf, with paths made local; access logging as in
// it (on, the default).
const originalConf = `worker_processes  1;
daemon off;
user root root;
pid {{.Dir}}/nginx.pid;
error_log {{.Dir}}/error.log;
events {
    worker_connections  1024;
}
http {
    access_log {{.Dir}}/access.log;
    client_body_temp_path {{.Dir}}/body;
    proxy_temp_path {{.Dir}}/proxy;
    client_max_body_size     50m;
    client_header_timeout 1m;
    client_body_timeout 1m;
    proxy_connect_timeout 600;
    proxy_read_timeout 600;
    proxy_send_timeout 600;
    upstream  matting_base64 {
       least_conn;
{{range .Ports}}       server    127.0.0.1:{{.}};
{{end}}    }
    server {
        listen       127.0.0.1:{{.Port}};
        client_max_body_size     50m;
        location /api/matting_base64 {
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_pass http://matting_base64;
        }
    }
}
`

// The original configuration tuned as an nginx user would: a worker per core,
// enough connections, keep-alive to the upstreams, no access log; the
// targets "nginx-tuned" and "nginx" (its short name). The
// "nginx-membuf" target also keeps request bodies up to 1 MiB in memory;
// by default nginx writes any body over 16 KiB to a temporary file.
const tunedConf = `worker_processes  auto;
daemon off;
user root root;
pid {{.Dir}}/nginx.pid;
error_log {{.Dir}}/error.log;
worker_rlimit_nofile 65536;
events {
    worker_connections  16384;
}
http {
    access_log off;
    client_body_temp_path {{.Dir}}/body;
    proxy_temp_path {{.Dir}}/proxy;
    client_max_body_size     50m;
{{if .MemBuf}}    client_body_buffer_size  1m;
{{end}}    client_header_timeout 1m;
    client_body_timeout 1m;
    proxy_connect_timeout 600;
    proxy_read_timeout 600;
    proxy_send_timeout 600;
    keepalive_requests 100000;
    upstream  matting_base64 {
       least_conn;
{{range .Ports}}       server    127.0.0.1:{{.}};
{{end}}       keepalive 128;
    }
    server {
        listen       127.0.0.1:{{.Port}} backlog=4096;
        location /api/matting_base64 {
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_pass http://matting_base64;
        }
    }
}
`

func (e *environment) startNginx(port int, sc scenario, target string) (proxyProcess, error) {
	stopReplicas, err := e.startReplicas(port+1, sc)
	if err != nil {
		return proxyProcess{}, err
	}
	dir, err := os.MkdirTemp(e.work, "nginx-")
	if err != nil {
		stopReplicas()
		return proxyProcess{}, err
	}
	conf := originalConf
	if target != "nginx-original" {
		conf = tunedConf
	}
	var ports []int
	for i := 0; i < replicas; i++ {
		ports = append(ports, port+1+i)
	}
	f, err := os.Create(filepath.Join(dir, "nginx.conf"))
	if err != nil {
		stopReplicas()
		return proxyProcess{}, err
	}
	err = template.Must(template.New("conf").Parse(conf)).Execute(f, map[string]any{"Dir": dir, "Port": port, "Ports": ports, "MemBuf": target == "nginx-membuf"})
	f.Close()
	if err != nil {
		stopReplicas()
		return proxyProcess{}, err
	}
	cmd := command(e.pin.servers, e.nginx, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"))
	out, _ := os.Create(filepath.Join(dir, "stderr.log"))
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		stopReplicas()
		return proxyProcess{}, fmt.Errorf("starting nginx (install it: apt-get install nginx): %w", err)
	}
	return proxyProcess{pid: cmd.Process.Pid, tree: true, stop: func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		out.Close()
		stopReplicas()
	}}, nil
}

// waitUp polls url until it answers at all (any status) or timeout passes.
func waitUp(url string, timeout time.Duration) error {
	c := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	for {
		resp, err := c.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode < 500 || strings.HasSuffix(url, "/api/matting_base64") && resp.StatusCode != http.StatusBadGateway && resp.StatusCode != http.StatusServiceUnavailable {
				return nil
			}
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = errors.New(resp.Status)
			}
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// freeRange returns a port p with p..p+n-1 free on loopback.
func freeRange(n int) (int, error) {
	for try := 0; try < 100; try++ {
		base := 10000 + rand.IntN(20000) // below the ephemeral range (32768 up), which clients take from
		ok := true
		for p := base; p < base+n && ok; p++ {
			ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
			if err != nil {
				ok = false
				continue
			}
			ln.Close()
		}
		if ok {
			return base, nil
		}
	}
	return 0, errors.New("no free ports")
}

// originalPayload builds the original load-test client's request body from an image.
func originalPayload(image string) ([]byte, error) {
	img, err := os.ReadFile(image)
	if err != nil {
		return nil, fmt.Errorf("reading the payload image (run bench from the repository root): %w", err)
	}
	return json.Marshal(map[string]string{
		"image": base64.StdEncoding.EncodeToString(img),
		"bg":    "[33, 150, 242]",
	})
}

// terminate stops a started mattingctl as Ctrl-C would (SIGTERM), and kills
// it if it has not exited within 40 s.
func terminate(cmd *exec.Cmd) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(40 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}
