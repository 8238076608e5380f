package replica

import (
	"reflect"
	"strings"
	"testing"
)

func TestLineTail(t *testing.T) {
	var tl lineTail
	if got := tl.last(); len(got) != 0 {
		t.Errorf("empty: last() = %q", got)
	}
	for _, line := range []string{"a\n", "\x1b[31mred\x1b[0m\r\n", "\t\n", "tab\there\n", "bad \xff byte\n"} {
		tl.add([]byte(line))
	}
	want := []string{"a", "[31mred[0m", "tab here", "bad ? byte"}
	if got := tl.last(); !reflect.DeepEqual(got, want) {
		t.Errorf("last() = %q, want %q", got, want)
	}
	for _, line := range []string{"3", "4", "5", "6", strings.Repeat("x", 1000)} {
		tl.add([]byte(line))
	}
	got := tl.last()
	if len(got) != TailLines || got[0] != "3" || len(got[TailLines-1]) != tailLineMax {
		t.Errorf("last() = %q, want the last %d lines, the long one cut to %d bytes", got, TailLines, tailLineMax)
	}
	var none *lineTail
	none.add([]byte("x"))
	if none.last() != nil {
		t.Error("a nil lineTail kept a line")
	}
}
