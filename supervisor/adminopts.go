package supervisor

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/mattingctl/mattingctl/internal/control"
)

// minAdminToken is the shortest --admin-token taken: it stands between
// the network and scaling the instance.
const minAdminToken = 16

// resolveAdmin gives Admin its default, 127.0.0.1 and the proxy port minus
// one, and checks it: HOST:PORT or AdminOff, on a port the proxy and the
// replicas do not use. It then checks AdminToken, or generates one for an
// admin listener without.
func (o *Options) resolveAdmin() error {
	if o.Admin == "" {
		o.Admin = net.JoinHostPort("127.0.0.1", strconv.Itoa(o.Port-1))
	}
	if o.Admin != AdminOff {
		host, port, err := net.SplitHostPort(o.Admin)
		if err != nil {
			return fmt.Errorf("--admin %q is not HOST:PORT (or none): %v", o.Admin, err)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 0 || n > maxPort {
			return fmt.Errorf("--admin %q: %q is not a port", o.Admin, port)
		} else if n != 0 && (host == "" || host == "127.0.0.1" || host == "0.0.0.0" || host == "localhost") &&
			(n == o.Port || n >= o.BasePort && n < o.BasePort+o.MostReplicas()) {
			return fmt.Errorf("--admin port %d clashes with the proxy or replica ports", n)
		}
	}
	if err := o.checkAdminToken(); err != nil {
		return err
	}
	if o.AdminToken == "" && o.Admin != AdminOff {
		token, err := control.NewToken()
		if err != nil {
			return err
		}
		o.AdminToken = token
	}
	return nil
}

// dashboardURL is the dashboard's URL on the admin listener asked for as
// configured (--admin) and bound at addr: on every interface, the
// loopback address of the family asked for (Go reports 0.0.0.0 bound
// dual-stack as [::]), which the person running `mattingctl dashboard` on
// this machine can reach.
func dashboardURL(configured, addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "http://" + addr + "/"
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
		if h, _, err := net.SplitHostPort(configured); err == nil && strings.Contains(h, ":") {
			host = "::1"
		}
	}
	return "http://" + net.JoinHostPort(host, port) + "/"
}

// checkAdminToken checks AdminToken: printable ASCII without spaces, so
// that it fits an Authorization header as it is, at least minAdminToken
// long, and only with an admin listener to use it.
func (o *AdminOptions) checkAdminToken() error {
	if o.AdminToken == "" {
		return nil
	}
	if o.Admin == AdminOff {
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
