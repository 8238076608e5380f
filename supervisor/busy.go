package supervisor

import "github.com/mattingctl/mattingctl/balancer"

// Busy is not dead. A model server computing one request at a time, with
// a hundred more waiting inside it, answers its health endpoint late or not
// at all: GET /health waits behind the requests, a TCP connect behind a
// full accept backlog. Liveness checks would fail for as long as the load
// lasts, and take every replica of a flooded service out of rotation, one
// after the other, then kill them with their requests. So a failed check
// does not count while the replica answers requests: if it has answered
// one since the previous check, it is busy, not hung.

// answering reports whether be has answered a request (a response that was
// not an error) since the last call, and remembers how many it had.
func (lv *liveness) answering(be *balancer.Backend) bool {
	answered := be.Requests() - min(be.Errors(), be.Requests())
	progressed := answered > lv.answered
	lv.answered = answered
	return progressed
}
