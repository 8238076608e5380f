package main

import (
	"bytes"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// TestUpFlagsHaveOneHeading: every flag of up is under exactly one of the
// headings of `up --help`, and every heading has flags.
func TestUpFlagsHaveOneHeading(t *testing.T) {
	cmd := newUpCmd(testFactory(), &globalOptions{}, nil)
	used := map[string]int{}
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		h := f.Annotations[groupAnnotation]
		if len(h) != 1 || !slices.Contains(upHeadings, h[0]) {
			t.Errorf("--%s is under %q, want exactly one of %q", f.Name, h, upHeadings)
			return
		}
		used[h[0]]++
	})
	for _, h := range upHeadings {
		if used[h] == 0 {
			t.Errorf("heading %q has no flag", h)
		}
	}
}

// upHelp returns the output of `mattingctl up --help`.
func upHelp(t *testing.T) string {
	t.Helper()
	var out bytes.Buffer
	root := newRootCmd(&factory{Out: &out, ErrOut: &out}, runFuncs{})
	root.SetOut(&out)
	root.SetArgs([]string{"up", "--help"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

var flagLine = regexp.MustCompile(`^  (?:-\w, |    )--([a-z0-9-]+)`)

// TestUpHelpGrouped: `up --help` lists every flag once, under its heading,
// the headings in order and each on a line of its own, then the global
// flags; a default is shown as pflag shows it, `(default X)` at the end of
// the line, and never in words of its own.
func TestUpHelpGrouped(t *testing.T) {
	help := upHelp(t)
	cmd := newUpCmd(testFactory(), &globalOptions{}, nil)
	var headings []string
	seen := map[string]bool{}
	heading := ""
	_, usage, ok := strings.Cut(help, "\nUsage:\n")
	if !ok {
		t.Fatalf("no Usage: in\n%s", help)
	}
	headings = append(headings, "Usage")
	for _, line := range strings.Split(usage, "\n") {
		if strings.HasSuffix(line, ":") && !strings.HasPrefix(line, " ") {
			heading = strings.TrimSuffix(line, ":")
			headings = append(headings, heading)
			continue
		}
		m := flagLine.FindStringSubmatch(line)
		if m == nil || heading == "Usage" {
			continue
		}
		name := m[1]
		if seen[name] {
			t.Errorf("--%s is listed twice", name)
		}
		seen[name] = true
		if heading == "Global Flags" {
			if name != "help" && name != "name" {
				t.Errorf("--%s is under Global Flags", name)
			}
			continue
		}
		f := cmd.Flags().Lookup(name)
		if f == nil {
			t.Errorf("--%s is not a flag of up", name)
			continue
		}
		if got := flagHeading(f); got != heading {
			t.Errorf("--%s is listed under %q, its heading is %q", name, heading, got)
		}
		if strings.Contains(line, "(default:") || strings.Count(line, "(default ") > 1 {
			t.Errorf("--%s shows its default in words of its own: %q", name, line)
		}
		if i := strings.Index(line, "(default "); i >= 0 && !strings.HasSuffix(line, ")") {
			t.Errorf("--%s: the default is not at the end of the line: %q", name, line)
		}
	}
	// docs/configuration.md and its test depend on these, in this order.
	want := []string{"Usage", "Replicas", "Proxy and limits", "Health", "Recycling", "Placement",
		"Protocols and TLS", "Observability", "Admin", "Global Flags"}
	if !reflect.DeepEqual(headings, want) {
		t.Errorf("headings %q, want %q", headings, want)
	}
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if !seen[f.Name] {
			t.Errorf("--%s is not in up --help", f.Name)
		}
	})
	if !seen["help"] || !seen["name"] {
		t.Errorf("--help or --name missing from the global flags:\n%s", help)
	}
}

// TestUpHelpDefaultsAreValues: every default `up --help` shows is one the
// flag takes, and giving it changes nothing: the shown defaults are the
// defaults.
func TestUpHelpDefaultsAreValues(t *testing.T) {
	base, err := parseUpArgs()
	if err != nil {
		t.Fatal(err)
	}
	cmd := newUpCmd(testFactory(), &globalOptions{}, nil)
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		switch f.DefValue {
		case "", "0", "false", "[]":
			return // no default shown: the zero value
		}
		o, err := parseUpArgs("--" + f.Name + "=" + f.DefValue)
		if err != nil {
			t.Errorf("--%s=%s, its default as shown: %v", f.Name, f.DefValue, err)
			return
		}
		o.Argv = base.Argv
		if !reflect.DeepEqual(o, base) {
			t.Errorf("--%s=%s, its default as shown, changed the options:\n%+v\nwant\n%+v", f.Name, f.DefValue, o.Options, base.Options)
		}
	})
}
