package supervisor

import (
	"strings"
	"testing"

	"github.com/mattingctl/mattingctl/balancer"
)

func TestResponseOptions(t *testing.T) {
	for _, tt := range []struct {
		name        string
		buf         int64
		maxUpgraded int
		wantBuf     int64
		wantErr     string
	}{
		{"off", 0, 100, 0, ""},
		{"explicit", 1 << 20, 100, 1 << 20, ""},
		{"negative buffer", -5, 0, 0, "--response-buffer must not be negative (0 means no response read ahead), not -5"},
		{"negative max-upgraded", 0, -1, 0, "--max-upgraded must not be negative (0 means the default, from the open-file limit), not -1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := upDefaults(1)
			if o.ResponseBuffer != balancer.DefaultLimits().ResponseBuffer || o.MaxUpgraded != 0 {
				t.Fatalf("defaults: response buffer %d, max upgraded %d", o.ResponseBuffer, o.MaxUpgraded)
			}
			o.ResponseBuffer, o.MaxUpgraded = tt.buf, tt.maxUpgraded
			got, err := o.resolve()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.ResponseBuffer != tt.wantBuf || got.MaxUpgraded != tt.maxUpgraded {
				t.Errorf("response buffer %d, max upgraded %d; want %d, %d", got.ResponseBuffer, got.MaxUpgraded, tt.wantBuf, tt.maxUpgraded)
			}
		})
	}
}
