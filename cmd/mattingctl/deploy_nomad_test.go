package main

import (
	"bufio"
	"cmp"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

const nomadJob = "../../examples/nomad/matting.nomad.hcl"

// Nomad. The job is read with regular expressions and brace matching, which
// is enough for the HCL written in examples/nomad.

var (
	hclArgs       = regexp.MustCompile(`(?s)\bargs\s*=\s*(\[.*?\])`)
	hclTrailing   = regexp.MustCompile(`,(\s*)\]`)
	hclPortTo     = regexp.MustCompile(`port\s+"([\w-]+)"\s*\{\s*to\s*=\s*(\d+)\s*\}`)
	hclStringAttr = regexp.MustCompile(`(?m)^\s*([\w-]+)\s*=\s*"([^"]*)"`)
	hclBlockOpen  = regexp.MustCompile(`(?m)^\s*([\w-]+)\s*(?:"[^"]*"\s*)*\{`)
)

// stripHCLComments removes # and // comments outside strings.
func stripHCLComments(src string) string {
	var b strings.Builder
	sc := bufio.NewScanner(strings.NewReader(src))
	for sc.Scan() {
		line := sc.Text()
		inString := false
		for i := 0; i < len(line); i++ {
			switch {
			case line[i] == '\\' && inString:
				i++
			case line[i] == '"':
				inString = !inString
			case !inString && (line[i] == '#' || strings.HasPrefix(line[i:], "//")):
				line = line[:i]
			}
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	return b.String()
}

// hclBlock is one `type "label" { ... }` block: its type, and its body
// with nested blocks cut out (attrs) and whole (body).
type hclBlock struct {
	typ   string
	attrs string
	body  string
}

// hclBlocks returns every block of src, at any depth, in order.
func hclBlocks(src string) ([]hclBlock, error) {
	var blocks []hclBlock
	for _, m := range hclBlockOpen.FindAllStringSubmatchIndex(src, -1) {
		start := m[1] // after the {
		depth, end := 1, -1
		for i := start; i < len(src) && end < 0; i++ {
			switch src[i] {
			case '{':
				depth++
			case '}':
				if depth--; depth == 0 {
					end = i
				}
			}
		}
		if end < 0 {
			return nil, fmt.Errorf("block %q at offset %d is not closed", src[m[2]:m[3]], m[0])
		}
		body := src[start:end]
		blocks = append(blocks, hclBlock{typ: src[m[2]:m[3]], body: body, attrs: topLevel(body)})
	}
	return blocks, nil
}

// blocksIn returns the blocks nested in body.
func blocksIn(t *testing.T, body string) []hclBlock {
	t.Helper()
	blocks, err := hclBlocks(body)
	if err != nil {
		t.Fatalf("%s: %v", nomadJob, err)
	}
	return blocks
}

// topLevel cuts nested blocks out of body.
func topLevel(body string) string {
	var b strings.Builder
	depth := 0
	for _, r := range body {
		switch {
		case r == '{':
			depth++
		case r == '}':
			depth--
		case depth == 0:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// attr returns a block's top-level string attribute.
func (b hclBlock) attr(name string) string {
	for _, m := range hclStringAttr.FindAllStringSubmatch(b.attrs, -1) {
		if m[1] == name {
			return m[2]
		}
	}
	return ""
}

func TestDeployExamplesNomad(t *testing.T) {
	data, err := os.ReadFile(nomadJob)
	if err != nil {
		t.Fatal(err)
	}
	src := stripHCLComments(string(data))
	blocks, err := hclBlocks(src)
	if err != nil {
		t.Fatalf("%s: %v", nomadJob, err)
	}

	var tasks []hclBlock
	for _, b := range blocks {
		if b.typ == "task" {
			tasks = append(tasks, b)
		}
	}
	if len(tasks) != 1 {
		t.Fatalf("%s: want one task (mattingctl), found %d", nomadJob, len(tasks))
	}
	task := tasks[0]

	m := hclArgs.FindStringSubmatch(task.body)
	if m == nil {
		t.Fatalf("%s: no args = [...] in the task", nomadJob)
	}
	var argv []string
	if err := json.Unmarshal([]byte(hclTrailing.ReplaceAllString(m[1], "$1]")), &argv); err != nil {
		t.Fatalf("%s: args is not a list of strings: %v", nomadJob, err)
	}
	if task.attr("driver") != "docker" {
		// exec or raw_exec: the command is mattingctl, the args follow it.
		configs := slices.DeleteFunc(blocksIn(t, task.body), func(b hclBlock) bool { return b.typ != "config" })
		if len(configs) != 1 || path.Base(configs[0].attr("command")) != "mattingctl" {
			t.Fatalf("%s: the %s task's config has no command running mattingctl", nomadJob, task.attr("driver"))
		}
	}
	o, err := parseUp(argv)
	if err != nil {
		t.Fatalf("%s: %v", nomadJob, err)
	}
	admin := checkContainerFlags(t, nomadJob, o)

	if sig := task.attr("kill_signal"); sig != "" && sig != "SIGTERM" && sig != "SIGINT" {
		t.Errorf("%s: kill_signal %s; mattingctl stops gracefully on SIGTERM or SIGINT", nomadJob, sig)
	}
	kt := task.attr("kill_timeout")
	killTimeout := 5 * time.Second // Nomad's default
	if kt != "" {
		if killTimeout, err = time.ParseDuration(kt); err != nil {
			t.Fatalf("%s: kill_timeout %q: %v", nomadJob, kt, err)
		}
	}
	if stop := o.DrainDelay + o.StopTimeout; killTimeout <= stop {
		t.Errorf("%s: kill_timeout %s is not more than --drain-delay %s + --stop-timeout %s: SIGKILL would cut the stop short",
			nomadJob, killTimeout, o.DrainDelay, o.StopTimeout)
	}

	// Nomad must wait for the model load: a deployment fails unless the
	// checks pass for min_healthy_time (default 10s) within
	// healthy_deadline (default 5m), and check_restart restarts the task if
	// its check fails after grace (default 1s).
	duration := func(b hclBlock, attr string, def time.Duration) time.Duration {
		v := b.attr(attr)
		if v == "" {
			return def
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("%s: %s.%s %q: %v", nomadJob, b.typ, attr, v, err)
		}
		return d
	}
	for _, b := range blocks {
		var got, need time.Duration
		var what string
		switch b.typ {
		case "update":
			what, got = "healthy_deadline", duration(b, "healthy_deadline", 5*time.Minute)
			need = startupBudget(o) + duration(b, "min_healthy_time", 10*time.Second)
		case "check_restart":
			what, got, need = "grace", duration(b, "grace", time.Second), startupBudget(o)
		default:
			continue
		}
		if got < need {
			t.Errorf("%s: %s %s %s is less than the %s mattingctl may need (--ready-timeout %s, --min-ready %d, --start-concurrency %d)",
				nomadJob, b.typ, what, got, need, o.ReadyTimeout, o.MinReady, o.StartConcurrency)
		}
	}

	// Port labels map to the ports mattingctl listens on in the container.
	to := map[string]int{}
	for _, pm := range hclPortTo.FindAllStringSubmatch(src, -1) {
		to[pm[1]], _ = strconv.Atoi(pm[2])
	}
	if len(to) == 0 {
		t.Fatalf(`%s: no port "label" { to = N } in the network block`, nomadJob)
	}

	var proxyService, adminService, readyCheck bool
	for _, svc := range blocks {
		if svc.typ != "service" {
			continue
		}
		svcPort := svc.attr("port")
		if _, ok := to[svcPort]; !ok {
			t.Errorf("%s: service %q: port %q is not a network port label", nomadJob, svc.attr("name"), svcPort)
		}
		if to[svcPort] == admin {
			adminService = true
		}
		var hasCheck bool
		for _, chk := range blocksIn(t, svc.body) {
			if chk.typ != "check" {
				continue
			}
			hasCheck = true
			name := chk.attr("name")
			if chk.attr("type") != "http" {
				t.Errorf("%s: check %q: type %q, want http", nomadJob, name, chk.attr("type"))
			}
			label := cmp.Or(chk.attr("port"), svcPort)
			if to[label] != admin {
				t.Errorf("%s: check %q uses port %q (to = %d); the --admin port is %d", nomadJob, name, label, to[label], admin)
			}
			switch p := chk.attr("path"); p {
			case "/readyz":
				readyCheck = true
				if to[svcPort] == o.Port {
					proxyService = true
				}
			case "/livez":
			default:
				t.Errorf("%s: check %q path %q, want /readyz or /livez", nomadJob, name, p)
			}
		}
		if !hasCheck {
			t.Errorf("%s: service %q has no check", nomadJob, svc.attr("name"))
		}
	}
	if !readyCheck {
		t.Errorf("%s: no service check on /readyz", nomadJob)
	}
	if !proxyService {
		t.Errorf("%s: no service on the proxy port (to = %d) checked on /readyz", nomadJob, o.Port)
	}
	if !adminService {
		t.Errorf("%s: no service on the admin port (to = %d) to scrape /metrics from", nomadJob, admin)
	}
}
