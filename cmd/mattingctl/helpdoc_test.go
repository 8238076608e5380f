package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// docs/configuration.md lists every flag of `up` under the heading of the
// group `up --help` shows it in, with the default `--help` prints. The
// tests here hold the two together: a flag added, moved or given another
// default in one and not the other fails, naming the flag.

// flagGroups are the headings of `up --help`'s flag groups, in order
// (upHeadings); the doc has a `## ` heading of the same words for each.
var flagGroups = upHeadings

// globalGroup holds the flags every command takes: "Global Flags:" in
// cobra's help, "## Global flags" in the doc.
const globalGroup = "Global flags"

// docFlag is one flag as the help or the doc describes it.
type docFlag struct {
	short string // "r" for -r; "" when none
	group string // the heading it is under
	def   string // the default as --help prints it, unquoted; "" when none
}

// helpFlagLine is one of pflag's flag lines: `  -r, --replicas int   usage`.
var helpFlagLine = regexp.MustCompile(`^\s+(?:-([a-zA-Z0-9]), )?--([a-z0-9][a-z0-9-]*)(?: ([a-zA-Z]+))?(?:\s{2,}(.*))?$`)

// parseHelp reads `up --help`: each flag under the heading line (a line at
// column 0 ending in ":") it follows, with its default, the text of the
// last "(default X)" or "(default: X)" ending its usage, quotes removed.
// "Global Flags:" becomes globalGroup; "Flags:" is kept as it is.
func parseHelp(help string) (map[string]docFlag, error) {
	flags := map[string]docFlag{}
	group := ""
	sc := bufio.NewScanner(strings.NewReader(help))
	for sc.Scan() {
		line := sc.Text()
		if line != "" && line[0] != ' ' && strings.HasSuffix(line, ":") {
			group = strings.TrimSuffix(line, ":")
			if group == "Global Flags" {
				group = globalGroup
			}
			continue
		}
		m := helpFlagLine.FindStringSubmatch(line)
		if m == nil || group == "" || group == "Usage" {
			continue
		}
		name := m[2]
		if _, dup := flags[name]; dup {
			return nil, fmt.Errorf("--%s is listed twice in up --help", name)
		}
		flags[name] = docFlag{short: m[1], group: group, def: helpDefault(m[4])}
	}
	return flags, sc.Err()
}

// helpDefault returns the default at the end of a flag's usage, or "".
func helpDefault(usage string) string {
	usage = strings.TrimSpace(usage)
	i := strings.LastIndex(usage, "(default")
	if i < 0 || !strings.HasSuffix(usage, ")") {
		return ""
	}
	def := strings.TrimPrefix(usage[i+len("(default"):len(usage)-1], ":")
	return unquote(strings.TrimSpace(def))
}

func unquote(s string) string {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		return s[1 : len(s)-1]
	}
	return s
}

// docFlagCell is the flag cell of a doc table row: `-r, --replicas N`.
var docFlagCell = regexp.MustCompile("^`(?:-([a-zA-Z0-9]), )?--([a-z0-9][a-z0-9-]*)")

// parseDoc reads docs/configuration.md: the rows of every `| flag |
// default | meaning |` table, each under the `## ` heading above it. A
// default cell of "—" or nothing means --help shows none; backticks
// around a default are markup.
func parseDoc(doc string) (map[string]docFlag, error) {
	flags := map[string]docFlag{}
	group, inTable := "", false
	for n, line := range strings.Split(doc, "\n") {
		switch {
		case strings.HasPrefix(line, "## "):
			group, inTable = strings.TrimSpace(strings.TrimPrefix(line, "## ")), false
			continue
		case !strings.HasPrefix(line, "|"):
			inTable = false
			continue
		}
		cells := tableCells(line)
		if len(cells) == 3 && cells[0] == "flag" && cells[1] == "default" && cells[2] == "meaning" {
			inTable = true
			continue
		}
		if !inTable || strings.Trim(line, "|-: ") == "" {
			continue
		}
		if len(cells) != 3 {
			return nil, fmt.Errorf("line %d: want 3 cells (flag, default, meaning), got %d", n+1, len(cells))
		}
		m := docFlagCell.FindStringSubmatch(cells[0])
		if m == nil {
			return nil, fmt.Errorf("line %d: the flag cell %q does not start with `--name` or `-x, --name`", n+1, cells[0])
		}
		if _, dup := flags[m[2]]; dup {
			return nil, fmt.Errorf("line %d: --%s is listed twice", n+1, m[2])
		}
		def := strings.Trim(cells[1], "`")
		if def == "—" {
			def = ""
		}
		flags[m[2]] = docFlag{short: m[1], group: group, def: def}
	}
	return flags, nil
}

// tableCells splits a Markdown table row at the pipes that are not
// escaped (`\|` is a pipe inside a cell).
func tableCells(row string) []string {
	row = strings.TrimSpace(row)
	row = strings.TrimSuffix(strings.TrimPrefix(row, "|"), "|")
	var cells []string
	var cur strings.Builder
	for i := 0; i < len(row); i++ {
		switch {
		case row[i] == '\\' && i+1 < len(row) && row[i+1] == '|':
			cur.WriteByte('|')
			i++
		case row[i] == '|':
			cells = append(cells, strings.TrimSpace(cur.String()))
			cur.Reset()
		default:
			cur.WriteByte(row[i])
		}
	}
	return append(cells, strings.TrimSpace(cur.String()))
}

// compareOptions say what compareHelpDoc checks besides names and defaults.
type compareOptions struct {
	groups bool            // each flag under the same group
	skip   map[string]bool // flags whose default depends on the machine
}

// compareHelpDoc returns one line for each disagreement between the help
// and the doc, each naming the flag, sorted.
func compareHelpDoc(help, doc map[string]docFlag, o compareOptions) []string {
	var errs []string
	for name, h := range help {
		if name == "help" {
			continue
		}
		d, ok := doc[name]
		switch {
		case !ok:
			errs = append(errs, fmt.Sprintf("--%s: in up --help (%s), missing from docs/configuration.md", name, h.group))
			continue
		case o.groups && h.group != d.group:
			errs = append(errs, fmt.Sprintf("--%s: under %q in up --help, under \"## %s\" in docs/configuration.md", name, h.group, d.group))
		}
		if h.short != d.short {
			errs = append(errs, fmt.Sprintf("--%s: shorthand %q in up --help, %q in docs/configuration.md", name, h.short, d.short))
		}
		if h.def != d.def && !o.skip[name] {
			errs = append(errs, fmt.Sprintf("--%s: default %q in up --help, %q in docs/configuration.md", name, h.def, d.def))
		}
	}
	for name, d := range doc {
		if _, ok := help[name]; !ok {
			errs = append(errs, fmt.Sprintf("--%s: in docs/configuration.md (## %s), not in up --help", name, d.group))
		}
	}
	slices.Sort(errs)
	return errs
}

// groupedHelp reports whether help groups the flags under the headings.
func groupedHelp(help string) bool {
	for _, g := range flagGroups {
		if !strings.Contains(help, "\n"+g+":\n") {
			return false
		}
	}
	return true
}

func readConfigDoc(t *testing.T) map[string]docFlag {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := parseDoc(string(b))
	if err != nil {
		t.Fatalf("docs/configuration.md: %v", err)
	}
	return doc
}

// TestConfigDocMatchesHelp compares docs/configuration.md with what
// `mattingctl up --help` prints.
func TestConfigDocMatchesHelp(t *testing.T) {
	text := upHelp(t)
	help, err := parseHelp(text)
	if err != nil {
		t.Fatal(err)
	}
	if len(help) < 40 {
		t.Fatalf("found %d flags in up --help; the parser no longer reads it:\n%s", len(help), text)
	}
	doc := readConfigDoc(t)
	for _, g := range append(slices.Clone(flagGroups), globalGroup) {
		if !slices.ContainsFunc(mapValues(doc), func(f docFlag) bool { return f.group == g }) {
			t.Errorf("docs/configuration.md has no flag table under \"## %s\"", g)
		}
	}
	o := compareOptions{skip: map[string]bool{}}
	o.groups = true
	if !groupedHelp(text) {
		t.Errorf("up --help does not group its flags under the headings %q:\n%s", flagGroups, text)
	}
	for _, e := range compareHelpDoc(help, doc, o) {
		t.Error(e)
	}
}

func mapValues(m map[string]docFlag) []docFlag {
	var out []docFlag
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// sampleHelp is `up --help` as it is grouped, cut short.
const sampleHelp = `Run N replicas of COMMAND behind a least-connection proxy.

Usage:
  mattingctl up [flags] -- COMMAND [ARG...]

Replicas:
  -r, --replicas int                number of replicas (default 1)
      --base-port int               port of replica 1; replica k gets base-port+k-1 (default 0: port+1)
  -e, --env stringArray             extra KEY=VALUE for every replica (repeatable)
  -d, --detach                      run in the background

Proxy and limits:
      --upstream-timeout duration   limit on waiting for a replica's response (more than 0) (default 10m0s)
      --queue-timeout duration      longest wait (default: the --upstream-timeout value; 0: no limit)
      --policy string               balancing policy: [fair least_conn] (default "least_conn")
      --max-conns int               client connections open at once (0: from ulimit -n)

Health:
      --health string               path a replica must answer 2xx on (default: its port accepts TCP)
      --health-interval duration    check liveness this often (0: off) (default 5s)

Flags:
  -h, --help   help for up

Global Flags:
      --name string   instance name, so several can run side by side (default "default")
`

// sampleDoc is docs/configuration.md as it agrees with sampleHelp.
const sampleDoc = "# Configuration\n\n" +
	"## Replicas\n\n" +
	"| flag | default | meaning |\n|---|---|---|\n" +
	"| `-r, --replicas N` | `1` | replicas |\n" +
	"| `--base-port B` | `0: port+1` | replica k listens on B+k-1 |\n" +
	"| `-e, --env KEY=VALUE` | — | extra environment |\n" +
	"| `-d, --detach` | | in the background |\n\n" +
	"## Proxy and limits\n\n" +
	"| flag | default | meaning |\n|---|---|---|\n" +
	"| `--upstream-timeout D` | `10m0s` | 600 s, as `proxy_read_timeout 600` |\n" +
	"| `--queue-timeout D` | `the --upstream-timeout value; 0: no limit` | wait \\| 503 |\n" +
	"| `--policy NAME` | `least_conn` | the policy |\n" +
	"| `--max-conns N` | — | connections |\n\n" +
	"Not a flag table:\n\n| situation | answer | code |\n|---|---|---|\n| `--queue` full | 503 | x |\n\n" +
	"## Health\n\n" +
	"| flag | default | meaning |\n|---|---|---|\n" +
	"| `--health PATH` | `its port accepts TCP` | readiness |\n" +
	"| `--health-interval D` | `5s` | liveness |\n\n" +
	"## Global flags\n\n" +
	"| flag | default | meaning |\n|---|---|---|\n" +
	"| `--name NAME` | `default` | instance name |\n"

func TestParseHelpSample(t *testing.T) {
	got, err := parseHelp(sampleHelp)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]docFlag{
		"replicas":         {"r", "Replicas", "1"},
		"base-port":        {"", "Replicas", "0: port+1"},
		"env":              {"e", "Replicas", ""},
		"detach":           {"d", "Replicas", ""},
		"upstream-timeout": {"", "Proxy and limits", "10m0s"},
		"queue-timeout":    {"", "Proxy and limits", "the --upstream-timeout value; 0: no limit"},
		"policy":           {"", "Proxy and limits", "least_conn"},
		"max-conns":        {"", "Proxy and limits", ""},
		"health":           {"", "Health", "its port accepts TCP"},
		"health-interval":  {"", "Health", "5s"},
		"help":             {"h", "Flags", ""},
		"name":             {"", globalGroup, "default"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("parseHelp:\n got %v\nwant %v", got, want)
	}
	if groupedHelp(sampleHelp) {
		t.Error("groupedHelp: true for a help with 3 of the 8 groups")
	}
	if all := "Usage:\n\n" + strings.Join(flagGroups, ":\n\n") + ":\n"; !groupedHelp(all) {
		t.Errorf("groupedHelp: false for a help with every group:\n%s", all)
	}
}

func TestParseDocSample(t *testing.T) {
	doc, err := parseDoc(sampleDoc)
	if err != nil {
		t.Fatal(err)
	}
	help, err := parseHelp(sampleHelp)
	if err != nil {
		t.Fatal(err)
	}
	if errs := compareHelpDoc(help, doc, compareOptions{groups: true}); len(errs) > 0 {
		t.Errorf("the samples should agree:\n%s", strings.Join(errs, "\n"))
	}
	if _, ok := doc["queue"]; ok {
		t.Error("a row of a table that is not a flag table was read as a flag")
	}
}

// TestCompareHelpDocFails shows that each kind of disagreement fails,
// naming the flag.
func TestCompareHelpDocFails(t *testing.T) {
	replace := func(old, new string) func(string) string {
		return func(doc string) string {
			if !strings.Contains(doc, old) {
				t.Fatalf("sampleDoc has no %q", old)
			}
			return strings.Replace(doc, old, new, 1)
		}
	}
	const healthRow = "| `--health-interval D` | `5s` | liveness |\n"
	tests := []struct {
		name      string
		edit      func(doc string) string
		want      string
		ungrouped bool // compared without groups, as before the config branch
	}{
		{"a default changed", replace("| `10m0s` |", "| `600s` |"),
			`--upstream-timeout: default "10m0s" in up --help, "600s" in docs/configuration.md`, false},
		{"a default changed, ungrouped", replace("| `5s` | liveness", "| `10s` | liveness"),
			`--health-interval: default "5s" in up --help, "10s" in docs/configuration.md`, true},
		{"a default added", replace("| `-e, --env KEY=VALUE` | — |", "| `-e, --env KEY=VALUE` | `none` |"),
			`--env: default "" in up --help, "none" in docs/configuration.md`, false},
		{"a default removed", replace("| `--policy NAME` | `least_conn` |", "| `--policy NAME` | — |"),
			`--policy: default "least_conn" in up --help, "" in docs/configuration.md`, false},
		{"a flag missing", replace("| `--max-conns N` | — | connections |\n", ""),
			`--max-conns: in up --help (Proxy and limits), missing from docs/configuration.md`, false},
		{"a flag only in the doc", replace("| `--max-conns N` |", "| `--max-connections N` |"),
			`--max-connections: in docs/configuration.md (## Proxy and limits), not in up --help`, false},
		{"a flag in another group", func(doc string) string {
			doc = replace(healthRow, "")(doc)
			return replace("| `--policy NAME` | `least_conn` | the policy |\n", "| `--policy NAME` | `least_conn` | the policy |\n"+healthRow)(doc)
		}, `--health-interval: under "Health" in up --help, under "## Proxy and limits" in docs/configuration.md`, false},
		{"a shorthand changed", replace("| `-d, --detach` |", "| `--detach` |"),
			`--detach: shorthand "d" in up --help, "" in docs/configuration.md`, false},
		{"the global flag's default", replace("| `--name NAME` | `default` |", "| `--name NAME` | `main` |"),
			`--name: default "default" in up --help, "main" in docs/configuration.md`, false},
	}
	help, err := parseHelp(sampleHelp)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc, err := parseDoc(tt.edit(sampleDoc))
			if err != nil {
				t.Fatal(err)
			}
			errs := compareHelpDoc(help, doc, compareOptions{groups: !tt.ungrouped})
			if !slices.Contains(errs, tt.want) {
				t.Errorf("got %q\nwant among them %q", errs, tt.want)
			}
		})
	}
}
