package supervisor

import (
	"fmt"

	"github.com/mattingctl/mattingctl/balancer"
)

// responseDefaults validates the response read-ahead and upgrade options
// and fills in their defaults.
func (o *Options) responseDefaults() error {
	switch {
	case o.ResponseBuffer < 0 && o.ResponseBuffer != balancer.Off:
		return fmt.Errorf("--response-buffer must not be negative (0 means no response read ahead), not %d", o.ResponseBuffer)
	case o.MaxUpgraded < 0:
		return fmt.Errorf("--max-upgraded must not be negative (0 means no cap), not %d", o.MaxUpgraded)
	}
	if o.ResponseBuffer == 0 {
		o.ResponseBuffer = balancer.DefaultResponseBuffer
	}
	return nil
}
