package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Everything after the command is the command's: `up python3 app.py
// --port 9000` passes --port 9000 to app.py, and mattingctl's proxy stays
// on its default port. That is right for an app that takes --port, and a
// surprise for a user who meant mattingctl's; warnMisplaced tells the
// second while leaving the first alone.

// warnMisplaced writes one warning line to w naming the arguments of
// command (after its name) that are up's own flags, `--port`, `--port=1`
// or `-p`, when no -- came before the command: with --, the user has said
// that what follows is the command's. A flag whose value holds {port} or
// {replica} is the app's, whatever its name.
func warnMisplaced(w io.Writer, cmd *cobra.Command, command []string) {
	if cmd.ArgsLenAtDash() >= 0 || len(command) < 2 {
		return
	}
	flags := misplacedFlags(cmd.Flags(), command[1:])
	if len(flags) == 0 {
		return
	}
	verb := "is"
	if len(flags) > 1 {
		verb = "are"
	}
	fmt.Fprintf(w, "mattingctl: warning: %s after the command %s passed to %s, not to mattingctl; put mattingctl's flags before the command (or before --)\n",
		strings.Join(flags, ", "), verb, command[0])
}

// misplacedFlags returns the arguments in args that are flags of fs, as
// written, without their values.
func misplacedFlags(fs *pflag.FlagSet, args []string) []string {
	var found []string
	for i, arg := range args {
		var f *pflag.Flag
		name, value, inline := strings.Cut(arg, "=")
		switch {
		case strings.HasPrefix(name, "--") && len(name) > 2:
			f = fs.Lookup(name[2:])
		case len(arg) == 2 && arg[0] == '-' && arg[1] != '-':
			f = fs.ShorthandLookup(arg[1:])
		}
		if f == nil {
			continue
		}
		if !inline && f.NoOptDefVal == "" && i+1 < len(args) {
			value = args[i+1]
		}
		if strings.Contains(value, "{port}") || strings.Contains(value, "{replica}") {
			continue
		}
		found = append(found, name)
	}
	return found
}
