package unitfile

import (
	"strings"
	"testing"
)

// splitExec is systemd's reading of an ExecStart= value, for the cases
// Command writes: words split at spaces, double quotes with C escapes,
// $$ for $ and %% for %. The test holds Command to it: what a word was
// is what systemd passes.
func splitExec(t *testing.T, line string) []string {
	t.Helper()
	line = strings.NewReplacer("$$", "$", "%%", "%").Replace(line)
	var words []string
	var cur strings.Builder
	inWord, quoted := false, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quoted && c == '\\':
			i++
			switch line[i] {
			case 'n':
				cur.WriteByte('\n')
			case 't':
				cur.WriteByte('\t')
			case 'r':
				cur.WriteByte('\r')
			case 'x':
				var b byte
				for _, h := range line[i+1 : i+3] {
					b = b*16 + byte(strings.IndexRune("0123456789abcdef", h))
				}
				cur.WriteByte(b)
				i += 2
			default:
				cur.WriteByte(line[i])
			}
		case c == '"':
			quoted, inWord = !quoted, true
		case c == ' ' && !quoted:
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			if !quoted && strings.ContainsRune(`\;'`, rune(c)) {
				t.Fatalf("unquoted %q in %q", c, line)
			}
			cur.WriteByte(c)
			inWord = true
		}
	}
	if quoted {
		t.Fatalf("unbalanced quotes in %q", line)
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

func TestCommandQuotesEachWord(t *testing.T) {
	for _, tc := range []struct {
		argv []string
		want string
	}{
		{[]string{"/usr/bin/python3", "app.py"}, "/usr/bin/python3 app.py"},
		{[]string{"/bin/sh", "-c", "echo $PORT"}, `/bin/sh -c "echo $$PORT"`},
		{[]string{"/x", "--env=A=50%"}, "/x --env=A=50%%"},
		{[]string{"/x", ";"}, `/x ";"`},
		{[]string{"/x", ""}, `/x ""`},
		{[]string{"/x", `say "hi"\n`}, `/x "say \"hi\"\\n"`},
		{[]string{"/x", "it's"}, `/x "it's"`},
		{[]string{"/x", "a\nb\tc\x01"}, `/x "a\nb\tc\x01"`},
		{[]string{"/x", "-b", "127.0.0.1:{port}"}, "/x -b 127.0.0.1:{port}"},
		{[]string{"/x", "héllo wörld"}, `/x "héllo wörld"`},
	} {
		got := Command(tc.argv)
		if got != tc.want {
			t.Errorf("Command(%q) = %s, want %s", tc.argv, got, tc.want)
		}
		if back := splitExec(t, got); strings.Join(back, "\x00") != strings.Join(tc.argv, "\x00") {
			t.Errorf("systemd would read %s as %q, not %q", got, back, tc.argv)
		}
	}
}

func TestValueEscapesSpecifiersAndRefusesLineBreaks(t *testing.T) {
	if got, err := Value("/srv/50% model"); err != nil || got != "/srv/50%% model" {
		t.Errorf("Value = %q, %v; want the %% doubled", got, err)
	}
	for _, bad := range []string{"a\nb", "a\rb", `C:\`} {
		if _, err := Value(bad); err == nil {
			t.Errorf("Value(%q) accepted", bad)
		}
	}
}

func TestWrite(t *testing.T) {
	var b strings.Builder
	err := Write(&b, []string{"made by a test", ""}, []Section{
		{Name: "Unit", Entries: []Entry{{Key: "Description", Value: "x"}}},
		{Name: "Service", Entries: []Entry{{Comment: []string{"why"}, Key: "Type", Value: "notify"}, {Comment: []string{"alone"}}}},
	})
	want := "# made by a test\n#\n\n[Unit]\nDescription=x\n\n[Service]\n# why\nType=notify\n# alone\n"
	if err != nil || b.String() != want {
		t.Fatalf("Write = %q, %v; want %q", b.String(), err, want)
	}
}
