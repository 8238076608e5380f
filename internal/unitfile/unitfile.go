// Package unitfile writes systemd unit files: sections of Key=Value
// lines, each value escaped by systemd's rules, command lines quoted word
// by word as ExecStart= splits them (systemd.service(5), "Command
// lines"; systemd.unit(5), "Specifiers").
package unitfile

import (
	"fmt"
	"io"
	"strings"
)

// Section is one [Name] block of a unit.
type Section struct {
	Name    string
	Entries []Entry
}

// Entry is one setting, with comment lines before it; an Entry with an
// empty Key is a comment alone.
type Entry struct {
	Comment []string
	Key     string
	// Value is written as it is: escape it with Value or Command.
	Value string
}

// Write writes header as comment lines, then the sections.
func Write(w io.Writer, header []string, sections []Section) error {
	var b strings.Builder
	for _, h := range header {
		comment(&b, h)
	}
	for i, s := range sections {
		if i > 0 || len(header) > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "[%s]\n", s.Name)
		for _, e := range s.Entries {
			for _, c := range e.Comment {
				comment(&b, c)
			}
			if e.Key != "" {
				fmt.Fprintf(&b, "%s=%s\n", e.Key, e.Value)
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func comment(b *strings.Builder, line string) {
	if line == "" {
		b.WriteString("#\n")
		return
	}
	b.WriteString("# " + line + "\n")
}

// Value escapes s for a setting that systemd takes to the end of the
// line, expanding specifiers (WorkingDirectory=, User=, Description=):
// a % is doubled. A line break cannot be written there; Value refuses
// it, as it does a trailing backslash (a continuation line).
func Value(s string) (string, error) {
	if strings.ContainsAny(s, "\n\r") {
		return "", fmt.Errorf("%q: a unit file cannot hold a line break there", s)
	}
	if strings.HasSuffix(s, `\`) {
		return "", fmt.Errorf("%q: a trailing backslash would continue the line in a unit file", s)
	}
	return strings.ReplaceAll(s, "%", "%%"), nil
}

// Command is argv as one ExecStart= value: each word that holds nothing
// systemd reads specially is written as it is, any other is put in
// double quotes with C escapes; in every word $ is doubled (systemd
// would substitute $VAR) and % too (a specifier). argv[0] must not start
// with one of systemd's prefixes (@-:+!); an absolute path never does.
func Command(argv []string) string {
	words := make([]string, len(argv))
	for i, a := range argv {
		words[i] = Word(a)
	}
	return strings.Join(words, " ")
}

// Word is one word of a command line, quoted for ExecStart=.
func Word(s string) string {
	s = strings.NewReplacer("$", "$$", "%", "%%").Replace(s)
	if s != "" && strings.IndexFunc(s, needsQuotes) < 0 {
		return s
	}
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"', '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case '\n':
			b.WriteString(`\n`)
		case '\t':
			b.WriteString(`\t`)
		case '\r':
			b.WriteString(`\r`)
		default:
			if r < 0x20 || r == 0x7f {
				fmt.Fprintf(&b, `\x%02x`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}

// needsQuotes reports whether r, in a word, needs the word quoted:
// white space, quotes, the backslash, a semicolon (a lone one separates
// commands) and control characters. $ and % are escaped by doubling.
func needsQuotes(r rune) bool {
	switch r {
	case ' ', '"', '\'', '\\', ';':
		return true
	}
	return r < 0x20 || r == 0x7f
}
