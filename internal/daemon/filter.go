package daemon

import (
	"bytes"
	"slices"
	"strconv"
)

// replicaFilter picks the log lines about one replica: its own output
// ("replica-2 | ..."), and mattingctl's lines that name it ("replica ready:
// replica=replica-2", "there is no replica-2", or "replica":"replica-2" in
// JSON), but not other replicas' output that happens to name it.
type replicaFilter struct {
	prefix  []byte // "replica-", or "SERVICE-" for a service's
	name    []byte // "replica-2"; nil: any of prefix's
	service [][]byte
}

// newReplicaFilter keeps replica id's lines, or with a service those of
// replica id of that service, or of all its replicas when id is 0.
func newReplicaFilter(service string, id int) replicaFilter {
	f := replicaFilter{prefix: []byte("replica-")}
	if service != "" {
		f.prefix = []byte(service + "-")
		// mattingctl's log lines about the service, text and JSON.
		f.service = [][]byte{[]byte("service=" + service), []byte(`"service":"` + service + `"`)}
	}
	if id > 0 {
		f.name = append(slices.Clip(f.prefix), strconv.Itoa(id)...)
	}
	return f
}

// match reports whether line belongs to the filter's replica, or service.
func (f replicaFilter) match(line []byte) bool {
	if owner, ok := outputOwner(line, f.prefix); ok {
		return f.name == nil || bytes.Equal(owner, f.name)
	}
	if f.name != nil {
		return mentions(line, f.name)
	}
	for _, s := range f.service {
		if mentionsValue(line, s) {
			return true
		}
	}
	return false
}

// mentionsValue reports whether kv, a key and its value, occurs in line
// whole: "service=m" in "a service=m b", not in "service=m-v2" nor
// "xservice=m".
func mentionsValue(line, kv []byte) bool {
	return occurs(line, kv, func(b byte) bool { return b == ' ' || b == ',' || b == '}' || b == '\n' })
}

// outputOwner returns the replica whose output line is, as
// replica.Output writes it: its name (prefix and a number), padded with
// spaces, then "|".
func outputOwner(line, prefix []byte) ([]byte, bool) {
	if !bytes.HasPrefix(line, prefix) {
		return nil, false
	}
	i := len(prefix)
	for i < len(line) && line[i] >= '0' && line[i] <= '9' {
		i++
	}
	if i == len(prefix) {
		return nil, false
	}
	name := line[:i]
	for i < len(line) && line[i] == ' ' {
		i++
	}
	if i == len(line) || line[i] != '|' {
		return nil, false
	}
	return name, true
}

// mentions reports whether name occurs in line as a word of its own:
// "replica-2" in "replica=replica-2 pid=7", not in "replica-20" nor
// "xreplica-2".
func mentions(line, name []byte) bool {
	return occurs(line, name, func(b byte) bool { return !isWordByte(b) })
}

// occurs reports whether s occurs in line after the start or a byte not of
// a word, and before the end or a byte that ends it.
func occurs(line, s []byte, ends func(byte) bool) bool {
	for off := 0; ; {
		i := bytes.Index(line[off:], s)
		if i < 0 {
			return false
		}
		start, end := off+i, off+i+len(s)
		before := start == 0 || !isWordByte(line[start-1])
		after := end == len(line) || ends(line[end])
		if before && after {
			return true
		}
		off = end
	}
}

func isWordByte(b byte) bool {
	return b == '_' || b >= '0' && b <= '9' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z'
}
