package replica

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
)

// feed passes chunks through copyLines as separate writes on a pipe, so
// that a line may arrive in pieces, and returns what the Output wrote.
func feed(o *Output, name string, chunks ...string) string {
	var buf bytes.Buffer
	o.Stdout = &buf
	r, w := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		o.copyLines(o.Stdout, name, r, nil)
	}()
	for _, c := range chunks {
		_, _ = io.WriteString(w, c)
	}
	w.Close()
	<-done
	return buf.String()
}

func TestOutputLines(t *testing.T) {
	long := strings.Repeat("x", 150_000)
	exact := strings.Repeat("y", maxLine)
	tests := []struct {
		name   string
		width  int
		chunks []string
		want   string
	}{
		{"one line", 0, []string{"hello\n"}, "r-1 | hello\n"},
		{"line in pieces", 0, []string{"hel", "lo wor", "ld\nsec", "ond\n"}, "r-1 | hello world\nr-1 | second\n"},
		{"empty line kept", 0, []string{"a\n\nb\n"}, "r-1 | a\nr-1 | \nr-1 | b\n"},
		{"partial last line gets a newline", 0, []string{"done\nno newline"}, "r-1 | done\nr-1 | no newline\n"},
		{"nothing", 0, nil, ""},
		{"padded", 9, []string{"hi\n"}, "r-1       | hi\n"},
		{"width below name", 2, []string{"hi\n"}, "r-1 | hi\n"},
		{"width equal to name", 3, []string{"hi\n"}, "r-1 | hi\n"},
		{
			"long line split into prefixed pieces", 0, []string{long + "\nafter\n"},
			"r-1 | " + long[:maxLine] + "\n" +
				"r-1 | " + long[maxLine:2*maxLine] + "\n" +
				"r-1 | " + long[2*maxLine:] + "\n" +
				"r-1 | after\n",
		},
		{"long partial last line", 0, []string{long}, "r-1 | " + long[:maxLine] + "\nr-1 | " + long[maxLine:2*maxLine] + "\nr-1 | " + long[2*maxLine:] + "\n"},
		{"line of exactly maxLine", 0, []string{exact + "\nafter\n"}, "r-1 | " + exact + "\nr-1 | after\n"},
		{"line one short of maxLine", 0, []string{exact[1:] + "\n"}, "r-1 | " + exact[1:] + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := feed(&Output{Width: tt.width}, "r-1", tt.chunks...)
			if got != tt.want {
				t.Errorf("output differs:\n got %s\nwant %s", abbrev(got), abbrev(tt.want))
			}
		})
	}
}

// abbrev shortens long runs so a failure stays readable.
func abbrev(s string) string {
	var b strings.Builder
	for _, line := range strings.SplitAfter(s, "\n") {
		if len(line) > 80 {
			line = fmt.Sprintf("%s...(%d bytes)...%s", line[:20], len(line), line[len(line)-20:])
		}
		fmt.Fprintf(&b, "%q ", line)
	}
	return b.String()
}

// TestOutputNoInterleave writes lines from two sources in small pieces at
// the same time; every line must come out whole under its own prefix, in
// the order its source wrote it.
func TestOutputNoInterleave(t *testing.T) {
	const lines = 300
	var buf bytes.Buffer
	o := &Output{Stdout: &buf, Stderr: &buf, Width: 9}
	sources := []string{"replica-1", "replica-22"}
	var wg sync.WaitGroup
	for i, name := range sources {
		r, w := io.Pipe()
		wg.Go(func() { o.copyLines(&buf, name, r, nil) })
		wg.Go(func() {
			defer w.Close()
			for n := range lines {
				line := fmt.Sprintf("%s line %04d %s\n", name, n, strings.Repeat(string(rune('a'+i)), 40))
				// Pieces of 7 bytes: most lines arrive in several writes.
				for len(line) > 0 {
					k := min(7, len(line))
					if _, err := io.WriteString(w, line[:k]); err != nil {
						return
					}
					line = line[k:]
				}
			}
		})
	}
	wg.Wait()

	next := map[string]int{}
	for _, line := range strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n") {
		prefix, rest, ok := strings.Cut(line, " | ")
		if !ok {
			t.Fatalf("line without prefix: %q", line)
		}
		name := strings.TrimRight(prefix, " ")
		i := -1
		for j, s := range sources {
			if s == name {
				i = j
			}
		}
		if i < 0 {
			t.Fatalf("unknown prefix %q in %q", prefix, line)
		}
		if want := fmt.Sprintf("%-9s", name); prefix != want {
			t.Errorf("prefix %q, want %q", prefix, want)
		}
		want := fmt.Sprintf("%s line %04d %s", name, next[name], strings.Repeat(string(rune('a'+i)), 40))
		if rest != want {
			t.Fatalf("line %q, want %q (interleaved or out of order)", rest, want)
		}
		next[name]++
	}
	for _, name := range sources {
		if next[name] != lines {
			t.Errorf("%s: %d lines, want %d", name, next[name], lines)
		}
	}
}
