package main

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/mattingctl/mattingctl/internal/control"
	"github.com/mattingctl/mattingctl/supervisor"
)

// A running instance reads its settings again (`mattingctl reload`,
// SIGHUP) and takes new ones (`mattingctl set`) by parsing up's command
// line again, in the up process: the flags and the file mean exactly what
// they meant at start, and a setting is named as up's flag is.

// upSource returns how the instance that opts starts reads its settings
// again: opts.Argv parsed as at start, with a config file's content given.
func upSource(opts *upOptions) *supervisor.Source {
	argv := slices.Clone(opts.Argv)
	return &supervisor.Source{
		File:    opts.File,
		Content: opts.FileContent,
		Fixed:   fixedSettings(opts),
		Load: func(content []byte, sets []string) (supervisor.Options, map[string]string, error) {
			o, err := parseUpAgain(argv, content, sets, "")
			if err != nil {
				return supervisor.Options{}, nil, err
			}
			return o.Options, fixedSettings(o), nil
		},
		LoadService: func(name string, content []byte, sets []string) (supervisor.Options, map[string]string, error) {
			o, err := parseUpAgain(argv, content, sets, name)
			if err != nil {
				return supervisor.Options{}, nil, err
			}
			return o.Options, fixedSettings(o), nil
		},
	}
}

// fixedSettings are up's settings that are not the supervisor's Options
// and cannot change while the instance runs.
func fixedSettings(o *upOptions) map[string]string {
	return map[string]string{
		"name":       o.Name,
		"file":       o.File,
		"detach":     strconv.FormatBool(o.Detach),
		"log-level":  o.LogLevel,
		"log-format": o.LogFormat,
	}
}

// parseUpAgain parses argv, up's command line with the global flags, as
// `mattingctl` did at start, with content as the config file's (if argv
// has -f), then applies sets over it (applySets), or over the file's
// service called service when not empty. Warnings, which up printed at
// start, are not printed again.
func parseUpAgain(argv []string, content []byte, sets []string, service string) (*upOptions, error) {
	f := &factory{Out: io.Discard, ErrOut: io.Discard}
	g := &globalOptions{}
	opts := defaultUpOptions(f)
	opts.FileContent, opts.fileRead = content, true
	if service != "" {
		opts.service, opts.serviceSets = service, sets
		sets = nil
	}
	var parsed bool
	up := newUpCmdWith(f, g, opts, func(*upOptions) error { parsed = true; return nil })
	root := &cobra.Command{Use: "mattingctl", SilenceErrors: true, SilenceUsage: true}
	root.SetOut(io.Discard)
	root.SetErr(io.Discard)
	root.PersistentFlags().StringVar(&g.Name, "name", control.DefaultName, "")
	root.AddCommand(up)
	plainErrors(up.Flags())
	root.SetArgs(argv)
	if err := root.Execute(); err != nil {
		return nil, err
	}
	if !parsed {
		return nil, fmt.Errorf("up's command line %q did not parse again as up", argv)
	}
	if err := applySets(up.Flags(), opts, sets, nil); err != nil {
		return nil, err
	}
	opts.Name = g.Name
	if err := finishUpOptions(opts); err != nil {
		return nil, err
	}
	return opts, nil
}

// applySets applies sets, FLAG=VALUE with up's long flag names or
// command=COMMAND LINE, to fl, the flags bound to opts. A repeatable
// flag's value replaces its list; the same flag given again adds to it
// (env=A=1 env=B=2). A flag in refused is refused, naming it.
func applySets(fl *pflag.FlagSet, opts *upOptions, sets, refused []string) error {
	seen := map[string]bool{}
	for _, kv := range sets {
		key, value, ok := strings.Cut(kv, "=")
		key = strings.TrimPrefix(key, "--")
		if !ok || key == "" {
			return fmt.Errorf("%q is not FLAG=VALUE, e.g. max-inflight=8", kv)
		}
		if key == "command" {
			if opts.Command = strings.Fields(value); len(opts.Command) == 0 {
				return fmt.Errorf("command=: the command is empty")
			}
			continue
		}
		f := fl.Lookup(key)
		if f == nil || key == "help" {
			return fmt.Errorf("%w %q (the settings are up's long flag names and command)", errNoSuchSetting, key)
		}
		if slices.Contains(refused, key) {
			return fmt.Errorf("%s is the instance's, not a service's, and cannot change while it runs", key)
		}
		var err error
		if sv, isList := f.Value.(pflag.SliceValue); isList && !seen[key] {
			err = sv.Replace([]string{value})
		} else {
			err = f.Value.Set(value)
		}
		if err != nil {
			return fmt.Errorf("%s=%s: %v", key, value, err)
		}
		f.Changed = true
		seen[key] = true
	}
	return nil
}
