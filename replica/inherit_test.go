package replica

import (
	"slices"
	"testing"
)

func TestInheritedEnvDropsSystemdsMainProcessVariables(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "/run/systemd/notify")
	t.Setenv("WATCHDOG_USEC", "30000000")
	t.Setenv("WATCHDOG_PID", "1")
	t.Setenv("MATTINGCTL_TEST_KEPT", "yes")
	env := inheritedEnv()
	for _, kv := range env {
		switch kv {
		case "NOTIFY_SOCKET=/run/systemd/notify", "WATCHDOG_USEC=30000000", "WATCHDOG_PID=1":
			t.Errorf("a replica would inherit %s", kv)
		}
	}
	if !slices.Contains(env, "MATTINGCTL_TEST_KEPT=yes") {
		t.Error("a replica would not inherit the rest of the environment")
	}
}
