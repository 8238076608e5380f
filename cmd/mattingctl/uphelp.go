package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// The headings `up --help` groups its flags under, in the order printed.
// docs/configuration.md follows them, and a test reads them from the help
// output: keep the words and the order stable.
const (
	headingReplicas      = "Replicas"
	headingProxy         = "Proxy and limits"
	headingHealth        = "Health"
	headingRecycling     = "Recycling"
	headingPlacement     = "Placement"
	headingProtocols     = "Protocols and TLS"
	headingObservability = "Observability"
	headingAdmin         = "Admin"
)

// headingUnit heads systemd-unit's own flags, before up's.
const headingUnit = "Unit"

var upHeadings = []string{
	headingReplicas, headingProxy, headingHealth, headingRecycling,
	headingPlacement, headingProtocols, headingObservability, headingAdmin,
}

// groupAnnotation is the pflag annotation that holds a flag's heading.
const groupAnnotation = "mattingctl_heading"

// inGroup runs add, which registers flags on fl, and puts each flag it
// registered under heading.
func inGroup(fl *pflag.FlagSet, heading string, add func()) {
	add()
	fl.VisitAll(func(f *pflag.Flag) {
		if _, ok := f.Annotations[groupAnnotation]; !ok {
			_ = fl.SetAnnotation(f.Name, groupAnnotation, []string{heading})
		}
	})
}

// flagHeading returns the heading f is under, or "" for none.
func flagHeading(f *pflag.Flag) string {
	if h := f.Annotations[groupAnnotation]; len(h) == 1 {
		return h[0]
	}
	return ""
}

// groupedUsage is `up`'s usage: the flags under their headings, each line
// as pflag prints it and aligned as one table, then the flags of every
// command (help, and --name) under "Global Flags:", as cobra prints them.
// Within a heading the flags are in the order they were registered.
func groupedUsage(c *cobra.Command) error {
	out := c.OutOrStderr()
	fmt.Fprintf(out, "Usage:\n  %s\n", c.UseLine())
	grouped := pflag.NewFlagSet("grouped", pflag.ContinueOnError)
	grouped.SortFlags = false
	global := pflag.NewFlagSet("global", pflag.ContinueOnError)
	var counts []int
	headings := append([]string{headingUnit}, upHeadings...)
	for _, h := range headings {
		n := 0
		visitInOrder(c.Flags(), func(f *pflag.Flag) {
			if flagHeading(f) == h {
				grouped.AddFlag(f)
				n++
			}
		})
		counts = append(counts, n)
	}
	// The rest: --help, and --name and the like from the root command.
	c.Flags().VisitAll(func(f *pflag.Flag) {
		if flagHeading(f) == "" {
			global.AddFlag(f)
		}
	})
	lines := strings.SplitAfter(grouped.FlagUsages(), "\n")
	for i, h := range headings {
		if counts[i] == 0 {
			continue // Unit, but for systemd-unit
		}
		fmt.Fprintf(out, "\n%s:\n", h)
		writeLines(out, lines[:counts[i]])
		lines = lines[counts[i]:]
	}
	if global.HasFlags() {
		fmt.Fprintf(out, "\nGlobal Flags:\n%s", global.FlagUsages())
	}
	return nil
}

// visitInOrder calls fn for each flag of fs in the order they were added.
func visitInOrder(fs *pflag.FlagSet, fn func(*pflag.Flag)) {
	sorted := fs.SortFlags
	fs.SortFlags = false
	defer func() { fs.SortFlags = sorted }()
	fs.VisitAll(fn)
}

func writeLines(w io.Writer, lines []string) {
	for _, l := range lines {
		_, _ = io.WriteString(w, l)
	}
}
