package main

import (
	"encoding/json"
	"os"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// dockerfile builds the image both the Kubernetes and the Nomad examples run.
const dockerfile = k8sDir + "/Dockerfile"

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
