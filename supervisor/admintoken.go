package supervisor

import "fmt"

// minAdminToken is the shortest --admin-token taken: it stands between
// the network and scaling the instance.
const minAdminToken = 16

// adminTokenDefaults checks AdminToken: printable ASCII without spaces,
// so that it fits an Authorization header as it is, at least minAdminToken
// long, and only with an admin listener to use it.
func (o *Options) adminTokenDefaults() error {
	if o.AdminToken == "" {
		return nil
	}
	if o.Admin == "none" {
		return fmt.Errorf("--admin-token needs the admin listener, but --admin is none")
	}
	for _, c := range o.AdminToken {
		if c <= ' ' || c > '~' {
			return fmt.Errorf("--admin-token: only printable ASCII without spaces, not %q", c)
		}
	}
	if len(o.AdminToken) < minAdminToken {
		return fmt.Errorf("--admin-token must be at least %d characters, not %d (e.g. `openssl rand -hex 16`)", minAdminToken, len(o.AdminToken))
	}
	return nil
}
