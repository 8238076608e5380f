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
	return settingsOf(path, root, true)
}

// settingsOf reads the mapping root of the file at path as settings, its
// services list left to parseServices when top.
func settingsOf(path string, root *yaml.Node, top bool) ([]setting, error) {
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
		if key == "services" && top {
			continue // parseServices reads them
		}
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

// serviceEntry is one entry of a config file's services list: a model
// server of several behind the instance's port.
type serviceEntry struct {
	Name, Route string
	StripPrefix bool
	Command     []string
	Settings    []setting // up's flags, by long name
	Line        int
}

// parseServices returns the services list of the config file at path whose
// content is b, or nil when it has none:
//
//	port: 9110
//	services:
//	  - name: matting
//	    route: /matting/
//	    strip_prefix: true
//	    replicas: 3
//	    command: [python3, app.py]
//
// Each entry takes name, route (a path prefix, or host:NAME), strip_prefix,
// command, and up's long flag names. Errors name the file and the line.
func parseServices(path string, b []byte) ([]serviceEntry, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil || len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, nil // parseConfig says what is wrong
	}
	root := doc.Content[0]
	var list *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		if strings.TrimPrefix(root.Content[i].Value, "--") == "services" {
			list = root.Content[i+1]
		}
	}
	if list == nil {
		return nil, nil
	}
	if list.Kind != yaml.SequenceNode || len(list.Content) == 0 {
		return nil, fmt.Errorf("%s: line %d: services: want a list of services, each a mapping with name, route and command", path, list.Line)
	}
	var out []serviceEntry
	for _, item := range list.Content {
		if item.Kind != yaml.MappingNode {
			return nil, fmt.Errorf("%s: line %d: services: each service is a mapping with name, route and command", path, item.Line)
		}
		settings, err := settingsOf(path, item, false)
		if err != nil {
			return nil, err
		}
		e := serviceEntry{Line: item.Line}
		for _, st := range settings {
			switch st.Key {
			case "name", "route", "strip_prefix":
				if len(st.Values) != 1 {
					return nil, fmt.Errorf("%s: line %d: %s: want one value", path, st.Line, st.Key)
				}
			}
			switch st.Key {
			case "name":
				e.Name = st.Values[0]
			case "route":
				e.Route = st.Values[0]
			case "strip_prefix":
				v, ok := map[string]bool{"true": true, "false": false}[st.Values[0]]
				if !ok {
					return nil, fmt.Errorf("%s: line %d: strip_prefix: want true or false, not %q", path, st.Line, st.Values[0])
				}
				e.StripPrefix = v
			case "command":
				e.Command = st.Values
			default:
				e.Settings = append(e.Settings, st)
			}
		}
		switch {
		case e.Name == "":
			return nil, fmt.Errorf("%s: line %d: a service needs a name", path, item.Line)
		case e.Route == "":
			return nil, fmt.Errorf("%s: line %d: service %s needs a route: a path prefix like /%s/, or host:NAME", path, item.Line, e.Name, e.Name)
		case len(e.Command) == 0:
			return nil, fmt.Errorf("%s: line %d: service %s needs a command", path, item.Line, e.Name)
		}
		out = append(out, e)
	}
	return out, nil
}
