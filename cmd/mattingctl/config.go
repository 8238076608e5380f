package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"
)

// setting is one entry of a config file: a flag of `mattingctl up` (its
// long name, without dashes) and its value or values, with the line it
// is on.
type setting struct {
	Key    string
	Values []string
	Line   int
}

// loadConfig reads a YAML config file for `mattingctl up`: a mapping from
// flag names to values, plus "command" (a list, or a string split at
// spaces). YAML, as the files ML engineers already keep (Kubernetes, Hydra,
// docker-compose) are YAML. Errors name the file and the line.
//
//	replicas: 4
//	health: /health
//	max-inflight: 8
//	env: [OMP_NUM_THREADS=1]
//	command: [python3, app.py]
func loadConfig(path string) ([]setting, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	return parseConfig(path, b)
}

// parseConfig is loadConfig of the file at path whose content is b.
func parseConfig(path string, b []byte) ([]setting, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("%s: %s", path, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if len(doc.Content) == 0 {
		return nil, nil // an empty file sets nothing
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s: line %d: want a mapping of flag names to values, like `replicas: 4`", path, root.Line)
	}
	var out []setting
	seen := map[string]int{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return nil, fmt.Errorf("%s: line %d: a key must be a flag name", path, k.Line)
		}
		key := strings.TrimPrefix(k.Value, "--")
		if prev, ok := seen[key]; ok {
			return nil, fmt.Errorf("%s: line %d: %q is already set on line %d", path, k.Line, key, prev)
		}
		seen[key] = k.Line
		s := setting{Key: key, Line: k.Line}
		switch v.Kind {
		case yaml.ScalarNode:
			if key == "command" {
				s.Values = strings.Fields(v.Value)
			} else {
				s.Values = []string{v.Value}
			}
		case yaml.SequenceNode:
			for _, item := range v.Content {
				if item.Kind != yaml.ScalarNode {
					return nil, fmt.Errorf("%s: line %d: %s: a list of plain values is expected", path, item.Line, key)
				}
				s.Values = append(s.Values, item.Value)
			}
		default:
			return nil, fmt.Errorf("%s: line %d: %s: want a value or a list of values", path, v.Line, key)
		}
		if key == "command" && len(s.Values) == 0 {
			return nil, fmt.Errorf("%s: line %d: command is empty", path, v.Line)
		}
		out = append(out, s)
	}
	return out, nil
}

// errNoSuchSetting is wrapped by errors about config keys that name no flag.
var errNoSuchSetting = errors.New("unknown setting")
