package balancer

import (
	"fmt"
	"net"
	"net/http"
	"sort"
	"strings"
)

// Route sends the requests that match it to a balancer of its own: one
// service of several behind one port. A route is a path prefix ("/matting/")
// or a host name (Host "ocr.example.com"), never both.
type Route struct {
	// Name names the service, in the 404 that lists the routes.
	Name string
	// Prefix matches a path that starts with it, and the path equal to it
	// without its trailing slash ("/matting" for "/matting/"). The
	// longest matching prefix wins; "/" matches every path.
	Prefix string
	// Host matches a request whose Host, without its port, is it, in any
	// case. Host routes are tried before prefix routes.
	Host string
	// StripPrefix removes Prefix from the path before the request is
	// forwarded: "/matting/api/x" reaches the replica as "/api/x".
	StripPrefix bool
	// To is the balancer the matching requests go to; its own queue,
	// admission and limits apply to them.
	To *Balancer
}

// Router sends each request to the balancer of the route it matches, and
// answers 404, listing the routes, one that matches none.
type Router struct {
	hosts    []Route // by host, as given
	prefixes []Route // longest prefix first
	list     string  // the routes, as the 404 lists them
}

// NewRouter returns a router over routes, which must be valid (as
// CheckRoutes checks).
func NewRouter(routes []Route) *Router {
	rt := &Router{}
	names := make([]string, 0, len(routes))
	for _, r := range routes {
		if r.Host != "" {
			rt.hosts = append(rt.hosts, r)
			names = append(names, "host:"+r.Host+" ("+r.Name+")")
		} else {
			rt.prefixes = append(rt.prefixes, r)
			names = append(names, r.Prefix+" ("+r.Name+")")
		}
	}
	sort.SliceStable(rt.prefixes, func(i, j int) bool { return len(rt.prefixes[i].Prefix) > len(rt.prefixes[j].Prefix) })
	rt.list = strings.Join(names, ", ")
	return rt
}

// CheckRoutes returns an error naming the route at fault when a route is
// neither a prefix starting with "/" nor a host name, or two routes are
// the same.
func CheckRoutes(routes []Route) error {
	seen := map[string]string{}
	for _, r := range routes {
		key := r.Prefix
		switch {
		case r.Host != "" && r.Prefix != "":
			return fmt.Errorf("service %s: a route is a path prefix or a host, not both", r.Name)
		case r.Host != "":
			if strings.ContainsAny(r.Host, "/: \t") {
				return fmt.Errorf("service %s: route host:%s: want a host name, without a port or a path", r.Name, r.Host)
			}
			key = "host:" + strings.ToLower(r.Host)
			if r.StripPrefix {
				return fmt.Errorf("service %s: strip_prefix needs a path prefix route, not host:%s", r.Name, r.Host)
			}
		case !strings.HasPrefix(r.Prefix, "/"):
			return fmt.Errorf("service %s: route %q: want a path prefix starting with / (like /%s/) or host:NAME", r.Name, r.Prefix, r.Name)
		}
		if other, ok := seen[key]; ok {
			return fmt.Errorf("services %s and %s have the same route %s", other, r.Name, key)
		}
		seen[key] = r.Name
	}
	return nil
}

// match returns the route r matches, or nil.
func (rt *Router) match(r *http.Request) *Route {
	if len(rt.hosts) > 0 {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		for i := range rt.hosts {
			if strings.EqualFold(rt.hosts[i].Host, host) {
				return &rt.hosts[i]
			}
		}
	}
	p := r.URL.Path
	for i := range rt.prefixes {
		prefix := rt.prefixes[i].Prefix
		if strings.HasPrefix(p, prefix) || p == strings.TrimSuffix(prefix, "/") && prefix != "/" {
			return &rt.prefixes[i]
		}
	}
	return nil
}

// ServeHTTP hands r to the balancer of its route, its path stripped of the
// route's prefix if the route says so, or answers 404 naming the routes.
func (rt *Router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	route := rt.match(r)
	if route == nil {
		refuse(w, r, http.StatusNotFound, grpcUnimplemented, fmt.Sprintf("no route for %s; the routes are %s", r.URL.Path, rt.list))
		return
	}
	if route.StripPrefix && route.Prefix != "/" {
		stripPrefix(r, route.Prefix)
	}
	route.To.serve(w, r)
}

// stripPrefix removes prefix, which ends in "/" or not, from r's path,
// keeping it absolute: "/matting/x" and "/matting" under "/matting/" become
// "/x" and "/".
func stripPrefix(r *http.Request, prefix string) {
	prefix = strings.TrimSuffix(prefix, "/")
	u := *r.URL
	u.Path = "/" + strings.TrimPrefix(strings.TrimPrefix(u.Path, prefix), "/")
	if u.RawPath != "" {
		u.RawPath = "/" + strings.TrimPrefix(strings.TrimPrefix(u.RawPath, prefix), "/")
	}
	r.URL = &u
	r.RequestURI = u.RequestURI()
}

// SetRouter makes b's server hand every request to rt instead of serving
// it itself; b is then one of rt's balancers, or none of them. Call it
// before Serve.
func (b *Balancer) SetRouter(rt *Router) { b.router = rt }

// SetObserver makes o the one told of every finished request, in place of
// Options.Observer. Call it before Serve.
func (b *Balancer) SetObserver(o Observer) {
	opts := *b.cfg()
	opts.Observer = o
	b.opts.Store(&opts)
}
