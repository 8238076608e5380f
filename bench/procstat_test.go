package main

import (
	"testing"
	"time"
)

func TestParseProcStat(t *testing.T) {
	for _, c := range []struct {
		name, line string
		want       procStat
		bad        bool
	}{
		{name: "plain", line: "1234 (nginx) S 1200 1234 1234 0 -1 4194560 4262 0 0 0 250 75 0 0 20 0 1 0 123456 12345678 900 18446744073709551615",
			want: procStat{ppid: 1200, cpu: 3250 * time.Millisecond, user: 2500 * time.Millisecond}},
		{name: "spaces and parentheses in the name", line: "77 (a) b (c) ) R 1 77 77 0 -1 0 0 0 0 0 7 3 0 0 20 0 4 0 1 1 1",
			want: procStat{ppid: 1, cpu: 100 * time.Millisecond, user: 70 * time.Millisecond}},
		{name: "a name that looks like fields", line: "9 (x) S 5 9 9 0 -1 0 0 0 0 0 1 1) S 2 2 2 2 2 2 2 2 2 2 2 2 2 2 2",
			want: procStat{ppid: 2, cpu: 40 * time.Millisecond, user: 20 * time.Millisecond}},
		{name: "no parenthesis", line: "1 init S 0", bad: true},
		{name: "too few fields", line: "1 (init) S 0 1 1 0 -1 0 0 0 0 0 5", bad: true},
		{name: "not a number", line: "1 (init) S 0 1 1 0 -1 0 0 0 0 0 x 1", bad: true},
	} {
		got, err := parseProcStat(c.line)
		if c.bad {
			if err == nil {
				t.Errorf("%s: parsed %+v, want an error", c.name, got)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%s: got %+v, %v; want %+v", c.name, got, err, c.want)
		}
	}
}
