package supervisor

import (
	"fmt"
	"strings"

	"github.com/mattingctl/mattingctl/replica"
)

// The protocol the proxy speaks to the replicas (--upstream-protocol).
const (
	// ProtocolHTTP1 is HTTP/1.1, what most model servers speak.
	ProtocolHTTP1 = "http1"
	// ProtocolH2C is HTTP/2 over cleartext with prior knowledge, what
	// gRPC servers speak: calls are multiplexed over one connection per
	// replica.
	ProtocolH2C = "h2c"
)

// checkProtocol validates UpstreamProtocol and its fit with Health, and
// fills in its default. A gRPC health check (--health grpc) needs h2c: it
// is refused with http1 rather than taken to imply h2c, since a replica
// that speaks gRPC cannot be spoken to in HTTP/1.1 at all, and a flag that
// changes another flag's value would hide that.
func (o *Options) checkProtocol() error {
	if o.UpstreamProtocol == "" {
		o.UpstreamProtocol = ProtocolHTTP1
	}
	if o.UpstreamProtocol != ProtocolHTTP1 && o.UpstreamProtocol != ProtocolH2C {
		return fmt.Errorf("--upstream-protocol %q is not http1 or h2c", o.UpstreamProtocol)
	}
	if _, grpc := replica.GRPCHealth(o.Health); grpc && o.UpstreamProtocol != ProtocolH2C {
		return fmt.Errorf("--health %s needs --upstream-protocol h2c: gRPC servers speak only HTTP/2", o.Health)
	}
	return nil
}

// healthValid reports whether health is a --health value: empty, a path,
// grpc or grpc:SERVICE.
func healthValid(health string) bool {
	_, grpc := replica.GRPCHealth(health)
	return health == "" || grpc || strings.HasPrefix(health, "/")
}

// probe returns the readiness and liveness check of a replica on port: by
// Health, over h2c when the replicas speak it.
func (o *Options) probe(port int) replica.Probe {
	p := replica.NewProbe(port, o.Health)
	p.H2C = o.UpstreamProtocol == ProtocolH2C
	return p
}
