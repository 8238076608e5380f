package main

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"
)

// synonyms are the words other tools (docker compose, systemctl, overmind)
// use for mattingctl's commands, which a user may type for them.
var synonyms = map[string][]string{
	"up":     {"start", "run", "serve"},
	"down":   {"stop", "kill", "shutdown"},
	"status": {"ps", "ls", "list"},
	"logs":   {"log"},
}

// suggestCommands makes root answer a word that is no command with one
// line that names the command meant: `unknown command "stop"; did you mean
// "down"?`. Cobra's own answer is a paragraph that knows no synonyms. root must
// be runnable for its Args to run: with no command it prints its help.
func suggestCommands(root *cobra.Command) {
	root.SuggestionsMinimumDistance = 2
	root.Args = unknownCommand
	root.RunE = func(cmd *cobra.Command, args []string) error { return cmd.Help() }
}

// unknownCommand is the root command's Args: any argument is a command
// that does not exist.
func unknownCommand(root *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	msg := fmt.Sprintf("unknown command %q", args[0])
	// A synonym is what was meant; spelling only guesses (ps is as near
	// to up as to status).
	suggestions := synonymOf(args[0])
	if suggestions == nil {
		suggestions = root.SuggestionsFor(args[0])
	}
	var quoted []string
	for _, s := range suggestions {
		if q := fmt.Sprintf("%q", s); !slices.Contains(quoted, q) {
			quoted = append(quoted, q)
		}
	}
	if len(quoted) > 0 {
		msg += "; did you mean " + strings.Join(quoted, " or ") + "?"
	} else {
		msg += "; see mattingctl --help"
	}
	return errors.New(msg)
}

// synonymOf returns the command that word is another tool's name for, or nil.
func synonymOf(word string) []string {
	for cmd, words := range synonyms {
		if slices.Contains(words, strings.ToLower(word)) {
			return []string{cmd}
		}
	}
	return nil
}
