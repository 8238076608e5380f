package supervisor

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/mattingctl/mattingctl/replica"
)

// healthAdvice is the end of the error for a --health path that answered
// 404 or 405 at start-up, from what the replica answered on the usual
// health paths (replica.CandidatePaths): the first of them it answered 2xx
// on, or, when none, what it answered on each.
func healthAdvice(tried []replica.PathAnswer) string {
	for _, a := range tried {
		if a.Err == nil && a.Code >= 200 && a.Code <= 299 {
			return fmt.Sprintf("is --health right? the replica answered %d on %s", a.Code, a.Path)
		}
	}
	if len(tried) == 0 {
		return "is --health right?"
	}
	answers := make([]string, len(tried))
	for i, a := range tried {
		answer := strconv.Itoa(a.Code)
		if a.Err != nil {
			answer = a.Err.Error()
		}
		answers[i] = a.Path + " " + answer
	}
	return "is --health right? the replica answered no 2xx on " + strings.Join(answers, ", ") +
		" either; pass the path it serves, or leave --health out to wait only for its port to accept connections"
}
