package balancer

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"
)

// Route sends the requests that match it to a balancer of its own: one
// service of several behind one port. A route is a path prefix ("/matting/")
// or a host name (Host "ocr.example"), never both.
type Route struct {
	// Name names the service, in the 404 that lists the routes.
	Name string
	// Prefix matches the paths under it, whole segments only: "/matting/"
	// and "/matting" both match /matting, /matting/ and /matting/x, not
	// /mattingx. The longest matching prefix wins; "/" matches every path.
	// It is matched against the path as the client encoded it, so
	// /m%61tting is not under /matting.
	Prefix string
	// Host matches a request whose Host, without its port and a final
	// dot, is it, in any case. Host routes are tried before prefix routes.
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
	hosts    []Route  // by host, as given
	prefixes []Route  // longest prefix first
	bases    []string // prefixes' paths without their final slash, "" for "/"
	list     string   // the routes, as the 404 lists them
	front    *Balancer
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
	sort.SliceStable(rt.prefixes, func(i, j int) bool { return len(base(rt.prefixes[i].Prefix)) > len(base(rt.prefixes[j].Prefix)) })
	for _, r := range rt.prefixes {
		rt.bases = append(rt.bases, base(r.Prefix))
	}
	rt.list = strings.Join(names, ", ")
	return rt
}

// base is prefix without its final slash: "" for "/".
func base(prefix string) string { return strings.TrimSuffix(prefix, "/") }

// CheckRoutes returns an error naming the route at fault when a route is
// neither a path prefix (starting with "/", with no dot segment, query,
// fragment or escape) nor a host name, or two routes are the same.
func CheckRoutes(routes []Route) error {
	seen := map[string]string{}
	for _, r := range routes {
		var key string
		switch {
		case r.Host != "" && r.Prefix != "":
			return fmt.Errorf("service %s: a route is a path prefix or a host, not both", r.Name)
		case r.Host != "":
			if strings.ContainsAny(r.Host, "/:[] \t%?#") || strings.HasSuffix(r.Host, ".") {
				return fmt.Errorf("service %s: route host:%s: want a host name, without a port, a path or a final dot", r.Name, r.Host)
			}
			if r.StripPrefix {
				return fmt.Errorf("service %s: strip_prefix needs a path prefix route, not host:%s", r.Name, r.Host)
			}
			key = "host:" + strings.ToLower(r.Host)
		case !strings.HasPrefix(r.Prefix, "/"):
			return fmt.Errorf("service %s: route %q: want a path prefix starting with / (like /%s/), or host:NAME", r.Name, r.Prefix, r.Name)
		case strings.ContainsAny(r.Prefix, "?#% \t") || hasDotSegment(r.Prefix) || strings.Contains(r.Prefix, "//"):
			return fmt.Errorf("service %s: route %q: want a plain path prefix, without a query, an escape, an empty or dot segment", r.Name, r.Prefix)
		default:
			key = base(r.Prefix) + "/"
		}
		if other, ok := seen[key]; ok {
			return fmt.Errorf("services %s and %s have the same route %s", other, r.Name, key)
		}
		seen[key] = r.Name
	}
	return nil
}

// hasDotSegment reports whether the path p has a "." or ".." segment.
func hasDotSegment(p string) bool {
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}

// match returns the route r matches, or nil.
func (rt *Router) match(r *http.Request) *Route {
	if len(rt.hosts) > 0 {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		host = strings.TrimSuffix(host, ".")
		for i := range rt.hosts {
			if strings.EqualFold(rt.hosts[i].Host, host) {
				return &rt.hosts[i]
			}
		}
	}
	p := r.URL.EscapedPath()
	for i, b := range rt.bases {
		if b == "" || p == b || strings.HasPrefix(p, b) && p[len(b)] == '/' {
			return &rt.prefixes[i]
		}
	}
	return nil
}

// ServeHTTP hands r to the balancer of its route, its path stripped of the
// route's prefix if the route says so. A path with a dot segment gets 400,
// as its route could be read two ways, and a path that matches no route
// 404 naming the routes, each logged and counted by the balancer that
// serves the port.
func (rt *Router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if hasDotSegment(r.URL.Path) {
		rt.front.answerOwn(w, r, http.StatusBadRequest, grpcInvalidArgument, "the path has a . or .. segment: "+r.URL.Path)
		return
	}
	route := rt.match(r)
	if route == nil {
		rt.front.answerOwn(w, r, http.StatusNotFound, grpcUnimplemented, fmt.Sprintf("no route for %s; the routes are %s", r.URL.Path, rt.list))
		return
	}
	if route.StripPrefix && base(route.Prefix) != "" {
		stripPrefix(r, base(route.Prefix))
	}
	route.To.serve(w, r)
}

// stripPrefix removes b, a prefix without its final slash, from r's path
// as the client encoded it, keeping it absolute: "/matting/x" and
// "/matting" under "/matting" become "/x" and "/". The access log keeps
// the path the client sent (r.RequestURI).
func stripPrefix(r *http.Request, b string) {
	rest := strings.TrimPrefix(r.URL.EscapedPath(), b)
	if !strings.HasPrefix(rest, "/") {
		rest = "/" + rest
	}
	u := *r.URL
	p, err := url.PathUnescape(rest)
	if err != nil { // not from a valid escaped path; keep it as it was
		return
	}
	u.Path, u.RawPath = p, rest
	r.URL = &u
}

// answerOwn answers r with code and msg as the proxy's own answer, logged
// and counted as every request is.
func (b *Balancer) answerOwn(rw http.ResponseWriter, r *http.Request, code int, grpc grpcCode, msg string) {
	x := &exchange{r: r, start: time.Now()}
	x.w, x.acc = b.beginAccess(rw, r, x.start)
	x.w = b.watch(x, rw)
	defer b.countRequest(x)
	defer b.finish(x)
	x.code = code
	refuse(x.w, r, code, grpc, msg)
}

// SetRouter makes b's server hand every request to rt instead of serving
// it itself; b is then one of rt's balancers, or none of them. Call it
// before Serve.
func (b *Balancer) SetRouter(rt *Router) {
	rt.front = b
	b.router = rt
}

// SetObserver makes o the one told of every finished request, in place of
// Options.Observer. Call it before Serve.
func (b *Balancer) SetObserver(o Observer) {
	opts := *b.cfg()
	opts.Observer = o
	b.opts.Store(&opts)
}

// arrivedAll counts the requests that asked for a backend of b, or of any
// balancer b's router hands requests to: the traffic of b's server.
func (b *Balancer) arrivedAll() uint64 {
	if b.router == nil {
		return b.arrived.Load()
	}
	seen := map[*Balancer]bool{}
	n := uint64(0)
	for _, rs := range [][]Route{b.router.hosts, b.router.prefixes} {
		for _, r := range rs {
			if !seen[r.To] {
				seen[r.To] = true
				n += r.To.arrived.Load()
			}
		}
	}
	if !seen[b] {
		n += b.arrived.Load()
	}
	return n
}
