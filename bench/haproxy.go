package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"text/template"
)

// haproxyConf is HAProxy set up for this job: least connections, keep-alive to the servers (http-reuse always
// lets any client's request take an idle server connection), limits and
// timeouts far from what the bench reaches, and no log. The
// "haproxy-buffered" target also waits for the request body before it
// picks a server (option http-buffer-request), as mattingctl reads a
// body whole first. HAProxy waits for at most a buffer (tune.bufsize,
// 16 KiB by default, left so here), so a larger body's server is picked
// once its first 16 KiB are in, and the rest streams through.
//
// no-memory-trimming keeps HAProxy from giving freed memory back to the
// system (malloc_trim) under memory pressure. HAProxy 3.x spells it
// "tune.options no-memory-trimming"; the 2.6 of Debian 12 rejects that
// ("unknown keyword 'tune.options'") and takes the global keyword
// no-memory-trimming instead.
const haproxyConf = `global
    maxconn 4096
    no-memory-trimming

defaults
    mode http
    maxconn 4096
    timeout connect 10s
    timeout client 10m
    timeout server 10m
    timeout queue 10m
    timeout http-request 1m
    timeout http-keep-alive 1m
    option forwardfor
    http-reuse always
{{if .Buffered}}    option http-buffer-request
{{end}}
frontend proxy
    bind 127.0.0.1:{{.Port}}
    default_backend replicas

backend replicas
    balance leastconn
{{range $i, $p := .Ports}}    server replica{{$i}} 127.0.0.1:{{$p}}
{{end}}`

// startHaproxy starts fresh replicas and HAProxy in front of them on port,
// in the foreground (-db: one process, a thread per CPU).
func (e *environment) startHaproxy(port int, sc scenario, buffered bool) (proxyProcess, error) {
	stopReplicas, err := e.startReplicas(port+1, sc)
	if err != nil {
		return proxyProcess{}, err
	}
	dir, err := os.MkdirTemp(e.work, "haproxy-")
	if err != nil {
		stopReplicas()
		return proxyProcess{}, err
	}
	var ports []int
	for i := 0; i < replicas; i++ {
		ports = append(ports, port+1+i)
	}
	conf := filepath.Join(dir, "haproxy.cfg")
	f, err := os.Create(conf)
	if err != nil {
		stopReplicas()
		return proxyProcess{}, err
	}
	err = template.Must(template.New("conf").Parse(haproxyConf)).Execute(f, map[string]any{"Port": port, "Ports": ports, "Buffered": buffered})
	f.Close()
	if err != nil {
		stopReplicas()
		return proxyProcess{}, err
	}
	cmd := command(e.pin.servers, "haproxy", "-db", "-f", conf)
	out, _ := os.Create(filepath.Join(dir, "stderr.log"))
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		stopReplicas()
		return proxyProcess{}, fmt.Errorf("starting haproxy (install it: apt-get install haproxy): %w", err)
	}
	return proxyProcess{
		pid:  cmd.Process.Pid,
		tree: true,
		stop: func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			_ = cmd.Wait()
			out.Close()
			stopReplicas()
		},
	}, nil
}

// haproxyVersion is the first line of `haproxy -v`, or why there is none.
func haproxyVersion() string {
	out, err := exec.Command("haproxy", "-v").Output()
	if err != nil {
		return "haproxy: " + err.Error()
	}
	first, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(first)
}
