package supervisor

import (
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/mattingctl/mattingctl/internal/fdbudget"
)

// TestOptionsMaxConns: resolve reads the limit in force.
func TestOptionsMaxConns(t *testing.T) {
	base := upDefaults(4)
	base.Command, base.StateDir, base.MaxInflight = []string{"x"}, "/s", 8
	o, err := base.resolve()
	if err != nil {
		t.Fatal(err)
	}
	want, _ := fdbudget.MaxConns(0, fdbudget.OpenFileLimit(), 4, 8)
	if o.MaxConns != want || o.MaxConns < fdbudget.MinDefault {
		t.Errorf("MaxConns = %d, want %d from ulimit -n %d", o.MaxConns, want, fdbudget.OpenFileLimit())
	}
	neg := upDefaults(1)
	neg.MaxConns = -5
	if _, err := neg.resolve(); err == nil || !strings.Contains(err.Error(), "--max-conns") {
		t.Errorf("MaxConns -5: error %v, want one naming --max-conns", err)
	}
}

// TestScaleWarnsPastTheFileBudget: scaling to more replicas than
// --max-conns left descriptors for is logged, once the sum passes the
// limit and not before.
func TestScaleWarnsPastTheFileBudget(t *testing.T) {
	limit := fdbudget.OpenFileLimit()
	if limit < 1024 || limit > 1<<30 {
		t.Skipf("ulimit -n %d", limit)
	}
	var log strings.Builder
	s := &Supervisor{
		opts: &config{Options: DefaultOptions()},
		log:  hclog.New(&hclog.LoggerOptions{Output: &log}),
	}
	s.opts.MaxInflight, s.opts.MaxConns = 8, int(limit)-fdbudget.Reserve(4, 8)
	s.warnFileBudget(4)
	if log.Len() != 0 {
		t.Fatalf("warned at the replica count --max-conns was sized for: %s", log.String())
	}
	s.warnFileBudget(5)
	if !strings.Contains(log.String(), "more file descriptors than ulimit -n allows") || !strings.Contains(log.String(), "replicas=5") {
		t.Fatalf("no warning scaling past the budget: %q", log.String())
	}
}
