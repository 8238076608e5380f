package admin

import (
	"crypto/subtle"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// ActionHeader must be sent, with the value 1, by every dashboard action.
// A browser sends a custom header across origins only after a CORS
// preflight, which the admin listener never grants, so a page elsewhere
// cannot make a visitor's browser act on the instance.
const ActionHeader = "X-Mattingctl-Action"

// guard lets an action through only when actions are offered (a token is
// set), the request comes from the dashboard's own origin, and it carries
// the token, on every address: loopback is not an identity, since any
// local user can connect to it. Refusals are 403, but 401 for a missing
// or wrong token.
func (d *dashboard) guard(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if status, msg := d.refuse(r); status != 0 {
			if status == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="mattingctl"`)
			}
			writeJSON(w, status, map[string]string{"error": msg})
			return
		}
		next(w, r)
	}
}

// refuse returns why r may not act, as a status and a message, or 0.
func (d *dashboard) refuse(r *http.Request) (int, string) {
	if d.ActionsOff != "" {
		return http.StatusForbidden, "actions are off: " + d.ActionsOff
	}
	if d.Token == "" {
		return http.StatusForbidden, "actions are off: the instance has no admin token"
	}
	if r.Header.Get(ActionHeader) != "1" {
		return http.StatusForbidden, "an action needs the header " + ActionHeader + ": 1"
	}
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return http.StatusForbidden, "cross-site request refused (Sec-Fetch-Site: " + site + ")"
	}
	if o := r.Header.Get("Origin"); o != "" {
		if u, err := url.Parse(o); err != nil || !strings.EqualFold(u.Host, r.Host) {
			return http.StatusForbidden, "cross-origin request refused (Origin: " + o + ")"
		}
	}
	// A name that resolves to 127.0.0.1 makes another site same-origin
	// with a loopback listener (DNS rebinding); the Host header still
	// names that site.
	if d.loopback && !loopbackHost(r.Host) {
		return http.StatusForbidden, "Host " + r.Host + " is not a loopback address; use 127.0.0.1, [::1] or localhost"
	}
	if !d.authorized(r) {
		return http.StatusUnauthorized, "an action needs the admin token, as Authorization: Bearer TOKEN; `mattingctl dashboard` prints the dashboard's URL with it"
	}
	return 0, ""
}

// authorized reports whether r carries the token, as a bearer token.
func (d *dashboard) authorized(r *http.Request) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && d.Token != "" && subtle.ConstantTimeCompare([]byte(got), []byte(d.Token)) == 1
}

// readGuard keeps the dashboard's data (the command line, replicas'
// errors) from a page elsewhere that a rebound DNS name points at a
// loopback listener: its Host header still names that page's site. Other
// clients of a loopback listener send a loopback Host.
func (d *dashboard) readGuard(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if d.loopback && !loopbackHost(r.Host) {
			writeJSON(w, http.StatusForbidden, map[string]string{"error": "Host " + r.Host + " is not a loopback address; use 127.0.0.1, [::1] or localhost"})
			return
		}
		next(w, r)
	}
}

// loopbackHost reports whether a Host header names this machine's
// loopback interface.
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
