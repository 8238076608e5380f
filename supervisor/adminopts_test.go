package supervisor

import (
	"strings"
	"testing"
)

func TestAdminTokenOption(t *testing.T) {
	for _, tt := range []struct {
		admin, token, err string
	}{
		{"", "", ""},
		{"0.0.0.0:9109", "0123456789abcdef", ""},
		{"", "0123456789abcde", "at least 16 characters"},
		{"", "0123456789abcdef 1", "without spaces"},
		{"", "0123456789abcdéf", "printable ASCII"},
		{"none", "0123456789abcdef", "--admin is none"},
	} {
		o := upDefaults(1)
		o.Admin, o.AdminToken = tt.admin, tt.token
		_, err := o.resolve()
		switch {
		case tt.err == "" && err != nil:
			t.Errorf("--admin %q --admin-token %q: %v", tt.admin, tt.token, err)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err) || !strings.Contains(err.Error(), "--admin")):
			t.Errorf("--admin %q --admin-token %q: error %v, want one naming the flag and %q", tt.admin, tt.token, err, tt.err)
		}
	}
}
