package replica

import (
	"os"
	"slices"
	"strings"

	"github.com/mattingctl/mattingctl/internal/sdnotify"
)

// inheritedEnv is the environment a replica inherits from mattingctl:
// all of it but systemd's variables for the service's main process
// (sdnotify.Env). mattingctl is that process; a model server that speaks
// sd_notify itself (gunicorn does) would otherwise tell systemd the
// whole service is ready, or be refused with a warning per message.
func inheritedEnv() []string {
	return slices.DeleteFunc(os.Environ(), func(kv string) bool {
		k, _, _ := strings.Cut(kv, "=")
		return slices.Contains(sdnotify.Env, k)
	})
}
