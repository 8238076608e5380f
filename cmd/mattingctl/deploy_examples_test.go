package main

import (
	"bufio"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/mattingctl/mattingctl/supervisor"
)

// The deployment examples in examples/kubernetes and examples/nomad are
// checked here against the flags `up` really takes: their mattingctl command
// lines go through the same parser as the real command, and ports, probes,
// checks and grace periods must agree with the flags they name.

const (
	k8sDir     = "../../examples/kubernetes"
	nomadJob   = "../../examples/nomad/matting.nomad.hcl"
	dockerfile = k8sDir + "/Dockerfile"
)

// parseUp runs argv (a mattingctl command line without the program name) through
// newRootCmd as `mattingctl up` would parse it and returns the options, so
// that an unknown flag or a bad value is an error here too.
func parseUp(argv []string) (*upOptions, error) {
	if len(argv) == 0 || argv[0] != "up" {
		return nil, fmt.Errorf("command line %q is not `mattingctl up ...`", argv)
	}
	var got *upOptions
	root := newRootCmd(runFuncs{up: func(o *upOptions) error { got = o; return nil }})
	root.SetArgs(argv)
	root.SetOut(io.Discard)
	root.SetErr(io.Discard)
	if err := root.Execute(); err != nil {
		return nil, fmt.Errorf("mattingctl %s: %w", strings.Join(argv, " "), err)
	}
	if got == nil {
		return nil, fmt.Errorf("mattingctl %s: did not run up", strings.Join(argv, " "))
	}
	if len(got.Command) == 0 {
		return nil, fmt.Errorf("mattingctl %s: no model server command", strings.Join(argv, " "))
	}
	if got.GPUs != "" && got.GPUs != "all" {
		if _, err := supervisor.ParseGPUs(got.GPUs); err != nil {
			return nil, err
		}
	}
	return got, nil
}

// checkContainerFlags checks what every containerised mattingctl needs:
// listeners the orchestrator can reach, a replica health path, a drain
// delay, and an admin port apart from the proxy's and the replicas'.
// It returns the admin port.
func checkContainerFlags(t *testing.T, where string, o *upOptions) int {
	t.Helper()
	if o.Host != "" && o.Host != "0.0.0.0" && o.Host != "::" {
		t.Errorf("%s: --host %q: the proxy must listen on all interfaces in a container", where, o.Host)
	}
	host, portStr, err := net.SplitHostPort(o.Admin)
	if err != nil {
		t.Fatalf("%s: --admin %q must be set as HOST:PORT for the probes: %v", where, o.Admin, err)
	}
	if host != "" && host != "0.0.0.0" && host != "::" {
		t.Errorf("%s: --admin %q: probes come from outside the container; listen on 0.0.0.0", where, o.Admin)
	}
	admin, err := strconv.Atoi(portStr)
	if err != nil || admin <= 0 {
		t.Fatalf("%s: --admin %q has no usable port", where, o.Admin)
	}
	base := o.BasePort
	if base == 0 {
		base = o.Port + 1
	}
	if admin == o.Port || admin >= base && admin < base+o.Replicas {
		t.Errorf("%s: --admin port %d clashes with the proxy (%d) or replicas (%d-%d)", where, admin, o.Port, base, base+o.Replicas-1)
	}
	if o.Health == "" {
		t.Errorf("%s: no --health: a replica would count as ready as soon as its port accepts, before its model is loaded", where)
	}
	if o.DrainDelay <= 0 {
		t.Errorf("%s: no --drain-delay: the proxy would stop accepting while endpoints still send to it", where)
	}
	return admin
}

// startupBudget is the longest `up` may take until /readyz answers 200:
// --min-ready replicas, --start-concurrency at a time, each within
// --ready-timeout.
func startupBudget(o *upOptions) time.Duration {
	minReady := max(o.MinReady, 1)
	waves := 1
	if k := o.StartConcurrency; k > 0 {
		waves = (minReady + k - 1) / k
	}
	return time.Duration(waves) * o.ReadyTimeout
}

// Kubernetes.

type k8sMeta struct {
	Name   string            `yaml:"name"`
	Labels map[string]string `yaml:"labels"`
}

// intOrString is a port given as a number or as a container port's name.
type intOrString string

func (v *intOrString) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want a port number or name", n.Line)
	}
	*v = intOrString(n.Value)
	return nil
}

type k8sProbe struct {
	HTTPGet *struct {
		Path string      `yaml:"path"`
		Port intOrString `yaml:"port"`
	} `yaml:"httpGet"`
	PeriodSeconds    int `yaml:"periodSeconds"`
	FailureThreshold int `yaml:"failureThreshold"`
}

type k8sContainer struct {
	Name    string   `yaml:"name"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	Ports   []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	Resources struct {
		Limits map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	StartupProbe   *k8sProbe `yaml:"startupProbe"`
	ReadinessProbe *k8sProbe `yaml:"readinessProbe"`
	LivenessProbe  *k8sProbe `yaml:"livenessProbe"`
}

// port resolves a probe's or Service's port, a number or a name, to the
// container port.
func (c *k8sContainer) port(p intOrString) (int, error) {
	if n, err := strconv.Atoi(string(p)); err == nil {
		return n, nil
	}
	for _, cp := range c.Ports {
		if cp.Name == string(p) {
			return cp.ContainerPort, nil
		}
	}
	return 0, fmt.Errorf("container %s has no port named %q", c.Name, p)
}

type k8sDeployment struct {
	Metadata k8sMeta `yaml:"metadata"`
	Spec     struct {
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Template struct {
			Metadata k8sMeta `yaml:"metadata"`
			Spec     struct {
				TerminationGracePeriodSeconds *int           `yaml:"terminationGracePeriodSeconds"`
				Containers                    []k8sContainer `yaml:"containers"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type k8sService struct {
	Spec struct {
		Selector map[string]string `yaml:"selector"`
		Ports    []struct {
			Name       string      `yaml:"name"`
			Port       int         `yaml:"port"`
			TargetPort intOrString `yaml:"targetPort"`
		} `yaml:"ports"`
	} `yaml:"spec"`
}

type k8sPDB struct {
	Spec struct {
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
	} `yaml:"spec"`
}

type k8sHPA struct {
	Spec struct {
		ScaleTargetRef struct {
			Kind string `yaml:"kind"`
			Name string `yaml:"name"`
		} `yaml:"scaleTargetRef"`
		Metrics []struct {
			Type string `yaml:"type"`
			Pods *struct {
				Metric struct {
					Name string `yaml:"name"`
				} `yaml:"metric"`
			} `yaml:"pods"`
		} `yaml:"metrics"`
	} `yaml:"spec"`
}

// k8sDoc is one YAML document of examples/kubernetes.
type k8sDoc struct {
	file       string
	apiVersion string
	kind       string
	node       *yaml.Node
}

// loadK8s parses every document of every YAML file in examples/kubernetes.
func loadK8s(t *testing.T) []k8sDoc {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(k8sDir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no YAML files in %s (%v)", k8sDir, err)
	}
	var docs []k8sDoc
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(strings.NewReader(string(data)))
		for {
			var n yaml.Node
			err := dec.Decode(&n)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			var head struct {
				APIVersion string `yaml:"apiVersion"`
				Kind       string `yaml:"kind"`
			}
			if err := n.Decode(&head); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if head.Kind == "" || head.APIVersion == "" {
				t.Fatalf("%s: a document (line %d) has no kind or apiVersion", f, n.Line)
			}
			docs = append(docs, k8sDoc{filepath.Base(f), head.APIVersion, head.Kind, &n})
		}
	}
	return docs
}

// decodeKind decodes the one document of kind into v and returns its file.
func decodeKind(t *testing.T, docs []k8sDoc, apiVersion, kind string, v any) string {
	t.Helper()
	var found []k8sDoc
	for _, d := range docs {
		if d.kind == kind {
			found = append(found, d)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one %s in %s, found %d", kind, k8sDir, len(found))
	}
	d := found[0]
	if d.apiVersion != apiVersion {
		t.Errorf("%s: %s is %s, want %s", d.file, kind, d.apiVersion, apiVersion)
	}
	if err := d.node.Decode(v); err != nil {
		t.Fatalf("%s: %s: %v", d.file, kind, err)
	}
	return d.file
}

// selects reports whether selector is non-empty and every label in it is
// on the pod (an empty PodDisruptionBudget selector selects every pod in
// the namespace).
func selects(selector, pod map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if pod[k] != v {
			return false
		}
	}
	return true
}

// quantityBytes reads a Kubernetes memory quantity such as 8Gi or 512M.
func quantityBytes(q string) (int64, error) {
	suffixes := []struct {
		s string
		m int64
	}{{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40}, {"k", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12}}
	for _, s := range suffixes {
		if n, ok := strings.CutSuffix(q, s.s); ok {
			v, err := strconv.ParseInt(n, 10, 64)
			return v * s.m, err
		}
	}
	return strconv.ParseInt(q, 10, 64)
}

func TestDeployExamplesKubernetes(t *testing.T) {
	docs := loadK8s(t)

	var dep k8sDeployment
	depFile := decodeKind(t, docs, "apps/v1", "Deployment", &dep)
	pod := dep.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("%s: want one container (mattingctl), found %d", depFile, len(pod.Containers))
	}
	c := &pod.Containers[0]
	where := depFile + ": container " + c.Name

	// The image's entrypoint is mattingctl; a command, if given, must be too.
	argv := append(slices.Clone(c.Command), c.Args...)
	if len(c.Command) > 0 {
		if path.Base(c.Command[0]) != "mattingctl" {
			t.Fatalf("%s: command %q is not mattingctl", where, c.Command)
		}
		argv = argv[1:]
	}
	o, err := parseUp(argv)
	if err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	admin := checkContainerFlags(t, where, o)

	ports := map[string]int{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if ports["http"] != o.Port {
		t.Errorf("%s: containerPort http is %d, --port is %d", where, ports["http"], o.Port)
	}
	if ports["admin"] != admin {
		t.Errorf("%s: containerPort admin is %d, --admin port is %d", where, ports["admin"], admin)
	}

	probes := []struct {
		name string
		p    *k8sProbe
		path string
	}{
		{"startupProbe", c.StartupProbe, "/readyz"},
		{"readinessProbe", c.ReadinessProbe, "/readyz"},
		{"livenessProbe", c.LivenessProbe, "/livez"},
	}
	for _, pr := range probes {
		if pr.p == nil || pr.p.HTTPGet == nil {
			t.Errorf("%s: no %s.httpGet", where, pr.name)
			continue
		}
		if pr.p.HTTPGet.Path != pr.path {
			t.Errorf("%s: %s path is %q, want %q", where, pr.name, pr.p.HTTPGet.Path, pr.path)
		}
		port, err := c.port(pr.p.HTTPGet.Port)
		if err != nil {
			t.Errorf("%s: %s: %v", where, pr.name, err)
		} else if port != admin {
			t.Errorf("%s: %s probes port %d, --admin port is %d", where, pr.name, port, admin)
		}
	}

	// Kubernetes' defaults: periodSeconds 10, failureThreshold 3.
	if sp := c.StartupProbe; sp != nil {
		period, failures := cmp.Or(sp.PeriodSeconds, 10), cmp.Or(sp.FailureThreshold, 3)
		budget := time.Duration(period*failures) * time.Second
		if need := startupBudget(o); budget < need {
			t.Errorf("%s: startupProbe allows %d x %ds = %s, less than the %s mattingctl may take to be ready (--ready-timeout %s, --min-ready %d, --start-concurrency %d)",
				where, failures, period, budget, need, o.ReadyTimeout, o.MinReady, o.StartConcurrency)
		}
	}

	grace := 30 * time.Second // Kubernetes' default
	if g := pod.TerminationGracePeriodSeconds; g != nil {
		grace = time.Duration(*g) * time.Second
	}
	if stop := o.DrainDelay + o.StopTimeout; grace <= stop {
		t.Errorf("%s: terminationGracePeriodSeconds %s is not more than --drain-delay %s + --stop-timeout %s: SIGKILL would cut the stop short",
			depFile, grace, o.DrainDelay, o.StopTimeout)
	}

	if q, ok := c.Resources.Limits["memory"]; ok && o.MaxMemory > 0 {
		limit, err := quantityBytes(q)
		if err != nil {
			t.Errorf("%s: memory limit %q: %v", where, q, err)
		} else if total := int64(o.Replicas) * o.MaxMemory; total >= limit {
			t.Errorf("%s: %d replicas x --max-memory %s = %s reach the memory limit %s: the OOM killer would act before mattingctl",
				where, o.Replicas, supervisor.FormatBytes(uint64(o.MaxMemory)), supervisor.FormatBytes(uint64(total)), q)
		}
	}
	if q, ok := c.Resources.Limits["nvidia.com/gpu"]; ok && o.GPUs != "" && o.GPUs != "all" {
		n, err := strconv.Atoi(q)
		gpus, _ := supervisor.ParseGPUs(o.GPUs)
		for _, g := range gpus {
			if i, ierr := strconv.Atoi(g); err == nil && ierr == nil && i >= n {
				t.Errorf("%s: --gpus %s names device %d, but the pod gets %s GPU(s), numbered from 0", where, o.GPUs, i, q)
			}
		}
	}

	podLabels := dep.Spec.Template.Metadata.Labels
	if !selects(dep.Spec.Selector.MatchLabels, podLabels) {
		t.Errorf("%s: selector %v does not match the pod labels %v", depFile, dep.Spec.Selector.MatchLabels, podLabels)
	}

	var svc k8sService
	svcFile := decodeKind(t, docs, "v1", "Service", &svc)
	if !selects(svc.Spec.Selector, podLabels) {
		t.Errorf("%s: selector %v does not match the Deployment's pod labels %v", svcFile, svc.Spec.Selector, podLabels)
	}
	targets := map[string]int{}
	for _, p := range svc.Spec.Ports {
		port, err := c.port(p.TargetPort)
		if err != nil {
			t.Errorf("%s: port %s: %v", svcFile, p.Name, err)
		}
		targets[p.Name] = port
	}
	if targets["http"] != o.Port {
		t.Errorf("%s: port http targets %d, --port is %d", svcFile, targets["http"], o.Port)
	}
	if targets["admin"] != admin {
		t.Errorf("%s: port admin targets %d, --admin port is %d", svcFile, targets["admin"], admin)
	}

	var pdb k8sPDB
	pdbFile := decodeKind(t, docs, "policy/v1", "PodDisruptionBudget", &pdb)
	if !selects(pdb.Spec.Selector.MatchLabels, podLabels) {
		t.Errorf("%s: selector %v does not match the Deployment's pod labels %v", pdbFile, pdb.Spec.Selector.MatchLabels, podLabels)
	}

	var hpa k8sHPA
	hpaFile := decodeKind(t, docs, "autoscaling/v2", "HorizontalPodAutoscaler", &hpa)
	if ref := hpa.Spec.ScaleTargetRef; ref.Kind != "Deployment" || ref.Name != dep.Metadata.Name {
		t.Errorf("%s: scaleTargetRef is %s %q, want Deployment %q", hpaFile, ref.Kind, ref.Name, dep.Metadata.Name)
	}
	if len(hpa.Spec.Metrics) == 0 {
		t.Errorf("%s: no metrics", hpaFile)
	}
	for _, m := range hpa.Spec.Metrics {
		if m.Type != "Pods" || m.Pods == nil {
			t.Errorf("%s: metric of type %q; want Pods metrics from mattingctl's /metrics", hpaFile, m.Type)
			continue
		}
		if !slices.Contains(supervisor.MetricNames, m.Pods.Metric.Name) {
			t.Errorf("%s: metric %q is not one mattingctl exports (supervisor.MetricNames)", hpaFile, m.Pods.Metric.Name)
		}
	}
}

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

// Dockerfile.

var dockerInstr = regexp.MustCompile(`^(?i)(FROM|ENTRYPOINT|CMD|COPY|EXPOSE)\s+(.*)$`)

func TestDeployExamplesDockerfile(t *testing.T) {
	data, err := os.ReadFile(dockerfile)
	if err != nil {
		t.Fatal(err)
	}
	// Join continuation lines, drop comments.
	var lines []string
	var cur strings.Builder
	for _, l := range strings.Split(string(data), "\n") {
		if s := strings.TrimSpace(l); strings.HasPrefix(s, "#") && cur.Len() == 0 {
			continue
		}
		if s, ok := strings.CutSuffix(strings.TrimRight(l, " \t"), `\`); ok {
			cur.WriteString(s)
			continue
		}
		cur.WriteString(l)
		lines = append(lines, strings.TrimSpace(cur.String()))
		cur.Reset()
	}

	// Only the final stage's instructions make the image.
	var entrypoint, cmd []string
	installed := map[string]bool{}
	exposed := map[int]bool{}
	stages := 0
	for _, l := range lines {
		m := dockerInstr.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		rest := strings.TrimSpace(m[2])
		switch strings.ToUpper(m[1]) {
		case "FROM":
			stages++
			entrypoint, cmd = nil, nil
			clear(installed)
			clear(exposed)
		case "ENTRYPOINT", "CMD":
			var v []string
			if err := json.Unmarshal([]byte(rest), &v); err != nil {
				t.Fatalf("%s: %s is not in JSON-array (exec) form: %v", dockerfile, m[1], err)
			}
			if strings.EqualFold(m[1], "ENTRYPOINT") {
				entrypoint = v
			} else {
				cmd = v
			}
		case "COPY":
			f := strings.Fields(rest)
			f = slices.DeleteFunc(f, func(s string) bool { return strings.HasPrefix(s, "--") })
			if len(f) < 2 {
				continue
			}
			dest := f[len(f)-1]
			for _, src := range f[:len(f)-1] {
				if strings.HasSuffix(dest, "/") {
					installed[dest+path.Base(src)] = true
				} else {
					installed[dest] = true
				}
			}
		case "EXPOSE":
			for _, p := range strings.Fields(rest) {
				n, _ := strconv.Atoi(strings.TrimSuffix(p, "/tcp"))
				exposed[n] = true
			}
		}
	}
	if stages < 2 {
		t.Errorf("%s: want a multi-stage build (builder, then a small runtime image)", dockerfile)
	}
	argv := append(slices.Clone(entrypoint), cmd...)
	if len(argv) == 0 || path.Base(argv[0]) != "mattingctl" {
		t.Fatalf("%s: ENTRYPOINT/CMD %q does not run mattingctl", dockerfile, argv)
	}
	if !installed[argv[0]] {
		t.Errorf("%s: %s is not copied into the final image", dockerfile, argv[0])
	}
	o, err := parseUp(argv[1:])
	if err != nil {
		t.Fatalf("%s: %v", dockerfile, err)
	}
	admin := checkContainerFlags(t, dockerfile, o)
	if !installed[o.Command[0]] {
		t.Errorf("%s: the model server %s is not copied into the final image", dockerfile, o.Command[0])
	}
	if !exposed[o.Port] || !exposed[admin] {
		t.Errorf("%s: EXPOSE should list the proxy port %d and the admin port %d", dockerfile, o.Port, admin)
	}

	// The manifests replace CMD: their model server must be in the image.
	var dep k8sDeployment
	decodeKind(t, loadK8s(t), "apps/v1", "Deployment", &dep)
	for _, c := range dep.Spec.Template.Spec.Containers {
		if ko, err := parseUp(c.Args); err == nil && !installed[ko.Command[0]] {
			t.Errorf("deployment.yaml runs %s, which %s does not install", ko.Command[0], dockerfile)
		}
	}
}
