package daemon

import (
	"bytes"
	"strconv"
)

// replicaFilter picks the log lines about one replica: its own output
// ("replica-2 | ..."), and mattingctl's lines that name it ("replica ready:
// replica=replica-2", "there is no replica-2", or "replica":"replica-2" in
// JSON), but not other replicas' output that happens to name it.
type replicaFilter struct {
	name []byte // "replica-2"
}

func newReplicaFilter(id int) replicaFilter {
	return replicaFilter{name: []byte("replica-" + strconv.Itoa(id))}
}

// match reports whether line belongs to the filter's replica.
func (f replicaFilter) match(line []byte) bool {
	if owner, ok := outputOwner(line); ok {
		return bytes.Equal(owner, f.name)
	}
	return mentions(line, f.name)
}

// outputOwner returns the replica whose output line is, as
// replica.Output writes it: its name, padded with spaces, then "|".
func outputOwner(line []byte) ([]byte, bool) {
	const prefix = "replica-"
	if !bytes.HasPrefix(line, []byte(prefix)) {
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
	for off := 0; ; {
		i := bytes.Index(line[off:], name)
		if i < 0 {
			return false
		}
		start, end := off+i, off+i+len(name)
		before := start == 0 || !isWordByte(line[start-1])
		after := end == len(line) || !isWordByte(line[end])
		if before && after {
			return true
		}
		off = end
	}
}

func isWordByte(b byte) bool {
	return b == '_' || b >= '0' && b <= '9' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z'
}
