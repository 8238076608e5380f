package main

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/mattingctl/mattingctl/internal/admin"
)

const k8sDir = "../../examples/kubernetes"

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
	adminPort := checkContainerFlags(t, where, o)

	ports := map[string]int{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if ports["http"] != o.Port {
		t.Errorf("%s: containerPort http is %d, --port is %d", where, ports["http"], o.Port)
	}
	if ports["admin"] != adminPort {
		t.Errorf("%s: containerPort admin is %d, --admin port is %d", where, ports["admin"], adminPort)
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
		} else if port != adminPort {
			t.Errorf("%s: %s probes port %d, --admin port is %d", where, pr.name, port, adminPort)
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
				where, o.Replicas, formatBytes(uint64(o.MaxMemory)), formatBytes(uint64(total)), q)
		}
	}
	if q, ok := c.Resources.Limits["nvidia.com/gpu"]; ok && o.GPUs != "" && o.GPUs != "all" {
		n, err := strconv.Atoi(q)
		gpus, _ := parseGPUs(o.GPUs)
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
	if targets["admin"] != adminPort {
		t.Errorf("%s: port admin targets %d, --admin port is %d", svcFile, targets["admin"], adminPort)
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
		if !slices.Contains(admin.MetricNames, m.Pods.Metric.Name) {
			t.Errorf("%s: metric %q is not one mattingctl exports (admin.MetricNames)", hpaFile, m.Pods.Metric.Name)
		}
	}
}
