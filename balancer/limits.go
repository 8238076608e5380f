package balancer

import (
	"time"

	"github.com/shirou/gopsutil/v3/mem"
)

// Limits bound what the proxy takes on: requests in flight, waiting and
// retried, the size and pace of what clients and backends send, the
// connections held open and the memory and disk that bodies use. Each is
// `mattingctl up`'s flag of the same name (MaxInflight is --max-inflight);
// DefaultLimits are its defaults. Every field says what its zero value
// means; where zero means nothing sensible (the timeouts, MaxBody), the
// supervisor's validation refuses it, and New does not check it again.
type Limits struct {
	// MaxInflight caps the requests in flight on each backend; the excess
	// waits in the queue. Zero means AdaptiveInflight's learned caps, or
	// no cap when it is zero too.
	MaxInflight int
	// AdaptiveInflight, when MaxInflight is zero and its Max is more than
	// zero, makes each backend's cap on requests in flight learned from
	// its response times, between Min and Max (limiter.go): `--max-inflight
	// auto`. A MaxInflight set takes its place; its zero value means no
	// learned cap.
	AdaptiveInflight InflightBounds
	// Queue bounds the requests waiting for a backend with room; one more
	// is answered 503 at once. Zero means no queue.
	Queue int
	// QueueTimeout bounds a request's wait for a backend with room, in the
	// queue and retrying busy backends; past it the request is answered
	// 503. A request whose predicted wait is longer is answered 503 at once
	// (admission.go). Nil means the UpstreamTimeout value, whatever it is,
	// as HAProxy's `timeout queue` follows `timeout connect`: a request
	// waits for a busy backend as long as for a slow one. Zero means no
	// limit: a request waits until a backend has room or its client goes
	// away.
	QueueTimeout *time.Duration
	// Retries is how many more times a request may be sent to a backend
	// when one refuses, resets or drops it before sending any response.
	// Every delivery counts, whatever became of it; only a busy backend's
	// refusal, which delivered nothing, does not, and is waited out
	// within QueueTimeout. A request whose deliveries killed or reset
	// backends twice is not sent again, so one poison input cannot take
	// down every backend in turn. Zero means none.
	Retries int
	// Quarantine is how long a request whose deliveries killed or reset
	// backends twice, each time alone (poison.go), is refused at once
	// with the same 502 when it comes again: the same method, request URI
	// and body, by SHA-256. Zero means never: a repeat is delivered
	// afresh.
	Quarantine time.Duration
	// Batch groups POSTs to its Path into one request to each backend's
	// batch endpoint (batch.go). Its zero value means no batching.
	Batch Batch
	// MaxBody is the largest request body accepted, in bytes; a larger one
	// is answered 413 before anything reaches a backend. It must be more
	// than zero.
	MaxBody int64
	// ClientTimeout bounds reading a client's request headers, and each
	// pause while reading its body (nginx's client_header_timeout and
	// client_body_timeout). It must be more than zero.
	ClientTimeout time.Duration
	// UpstreamTimeout bounds the wait for a backend's response headers once
	// the request is sent, and then each pause in its response body
	// (nginx's proxy_read_timeout, "between two successive read
	// operations"): a response that keeps coming is never cut, however
	// long, and one whose backend stalls is broken off (watchdog.go). It
	// must be more than zero.
	UpstreamTimeout time.Duration
	// SendTimeout bounds each write to a client that does not complete,
	// as the client takes nothing (nginx's send_timeout): the time between
	// two successful writes while one is waiting, never the whole
	// response, so a slow reader that keeps reading is served. Past it the
	// response is broken off and the backend's slot freed (watchdog.go).
	// It must be more than zero.
	SendTimeout time.Duration
	// ConnectTimeout bounds connecting to a backend; short, so that a hung
	// backend is skipped fast. It must be more than zero.
	ConnectTimeout time.Duration
	// MaxConns caps the client connections open at once (HAProxy's
	// maxconn). Past it a new connection is not accepted: it waits in the
	// kernel's listen backlog until one closes, so the process keeps file
	// descriptors for its backends and control socket. Zero means derived
	// from the open-file limit (fdbudget.MaxConns): what ulimit -n leaves
	// once descriptors are kept for the backends. The supervisor derives it
	// for its replicas; a Balancer given zero derives it for one backend.
	MaxConns int
	// MaxBuffer bounds the request bodies held in memory, whether being
	// read, queued or in flight, and the responses read ahead of their
	// clients (ResponseBuffer), in bytes. A body is reserved a chunk at a
	// time as it arrives (4 KiB, then 64 KiB); one that finds no room goes
	// to a file in BufferDir. Zero means none in memory: every body goes
	// to disk.
	MaxBuffer int64
	// MaxDiskBuffer bounds the request bodies, and the responses read
	// ahead of their clients, held in files, in bytes, charged as they
	// arrive: a request body what it has received, a response what it has
	// written. Past both budgets a request is answered 503 with
	// Retry-After, and a response is read from its backend only as fast as
	// its client takes it. Zero means none on disk: a body that does not
	// fit in memory gets 503.
	MaxDiskBuffer int64
	// MaxClientUploads caps the request bodies one client address may be
	// sending at once (the address of the connection, whatever
	// X-Forwarded-For says); one more is answered 429 with Retry-After
	// before it is read (clients.go). Zero means no cap.
	MaxClientUploads int
	// MaxClientBuffer caps the bytes of MaxBuffer and MaxDiskBuffer that
	// one client address's bodies may hold, being received, queued or in
	// flight; a body that would pass it is answered 429 with Retry-After.
	// Nil means half of MaxBuffer plus MaxDiskBuffer; zero means no cap.
	MaxClientBuffer *int64
	// MinUploadRate is the slowest a client may send a request body, in
	// bytes a second on average, once UploadGrace has passed since it
	// began; a slower one is answered 408 and its connection closed.
	// Zero means no minimum: only ClientTimeout bounds each pause.
	MinUploadRate int64
	// UploadGrace is how long a body may take before MinUploadRate
	// applies; every byte received buys 1/MinUploadRate seconds more.
	// Zero means none.
	UploadGrace time.Duration
	// BufferDir is where bodies that do not fit in memory are written,
	// each to a file removed when its request ends (a response's file is
	// removed as soon as it is created, and lives only while open); it is
	// made again if it has gone. Empty means a directory under the system
	// temp directory: the supervisor makes one of the instance's own
	// (supervisor.DefaultBufferDir); a Balancer given empty uses
	// os.TempDir() itself.
	BufferDir string
	// ResponseBuffer bounds the memory that the responses of one client
	// connection hold ahead of their client, in bytes (the streams of an
	// HTTP/2 connection share it). A response is read from its backend as
	// fast as the backend sends it, so that the backend's slot is freed as
	// soon as it has sent it rather than when a slow client has received
	// it (nginx's proxy_buffering); what the client has not taken yet is
	// held in memory up to this bound, within MaxBuffer, then in a file in
	// BufferDir, within MaxDiskBuffer (spool.go). Streams (server-sent
	// events, gRPC, X-Accel-Buffering: no) and responses of 32 KiB or less
	// pass through as they arrive. Zero means no response is read ahead.
	ResponseBuffer int64
	// MaxUpgraded caps the upgrade requests (WebSocket) open at once,
	// handshaking or upgraded, over all backends; one more is answered
	// 503 before reaching a backend. An upgraded connection holds no
	// MaxInflight slot. Zero means no cap for a Balancer; the supervisor
	// derives one from the open-file limit instead (fdbudget.Plan), since
	// each upgraded connection holds two descriptors.
	MaxUpgraded int
}

// DefaultLimits returns `mattingctl up`'s limits: the one place their
// defaults are set. The body size and timeouts are those of the nginx
// setup mattingctl replaces.
func DefaultLimits() Limits {
	return Limits{
		// A single-process model server computes one or a few requests at
		// a time, a batching GPU server dozens; more in flight only queue
		// inside it, unfairly and unbounded, and past a few hundred it
		// drops connections (the Flask service of the original nginx setup
		// did at ~300). No fixed number suits them all: each replica learns
		// its own (limiter.go), while the excess waits in the proxy's FIFO
		// queue, where it is bounded, fair and can be retried elsewhere.
		MaxInflight:      0,
		AdaptiveInflight: DefaultAdaptiveInflight,
		// Room for a flood of 1000 clients on 4 replicas, with ~220 MiB of
		// the original load test's bodies at most.
		Queue:        1024,
		QueueTimeout: nil, // the UpstreamTimeout value
		Retries:      2,
		// Long enough that a client retrying a poison request in a loop
		// costs nothing, short enough that a request that broke two
		// replicas by bad luck is served again soon.
		Quarantine:      time.Minute,
		MaxBody:         50 << 20,
		ClientTimeout:   time.Minute,
		UpstreamTimeout: 600 * time.Second,
		SendTimeout:     time.Minute, // nginx's send_timeout
		ConnectTimeout:  time.Second,
		MaxConns:        0, // derived from the open-file limit
		MaxBuffer:       defaultMaxBuffer(),
		MaxDiskBuffer:   10 << 30,
		// Far more than one client's bodies arrive at once over a LAN,
		// where a 220 KB body takes a few milliseconds; a client that
		// opens more at once is slow, or attacking.
		MaxClientUploads: 128,
		MaxClientBuffer:  nil, // half of MaxBuffer plus MaxDiskBuffer
		// Apache's RequestReadTimeout body=20,MinRate=500, at a round
		// number: a phone on a poor link sends far faster.
		MinUploadRate: 1 << 10,
		UploadGrace:   20 * time.Second,
		BufferDir:     "", // a directory under the system temp directory
		// Envoy's per_connection_buffer_limit_bytes. A client that keeps
		// up never has more than a few chunks waiting; a slower one spills
		// to a file (the page cache, mostly), as nginx's proxy_buffering
		// does past 64 KiB. 16 connections that read nothing hold 16 MiB,
		// where 8 MiB each made 128.
		ResponseBuffer: 1 << 20,
		MaxUpgraded:    0, // derived from the open-file limit
		// Off. When on: TorchServe's and LitServe's usual batch of 8, and
		// a wait short beside a forward pass (Triton's
		// max_queue_delay_microseconds is often 100-10,000).
		Batch: Batch{Max: DefaultBatchMax, Wait: DefaultBatchWait},
	}
}

// maxDefaultMaxBuffer caps the default MaxBuffer.
const maxDefaultMaxBuffer = 1 << 30

// defaultMaxBuffer returns the default memory budget for request bodies:
// the smaller of 1 GiB and a quarter of physical memory.
func defaultMaxBuffer() int64 {
	vm, err := mem.VirtualMemory()
	if err != nil || vm.Total == 0 {
		return maxDefaultMaxBuffer
	}
	return min(maxDefaultMaxBuffer, int64(vm.Total/4))
}

// InflightBounds are the least and most an adaptive cap on a backend's
// requests in flight may be: 1 <= Min <= Max.
type InflightBounds struct {
	Min, Max int
}

// DefaultAdaptiveInflight are `--max-inflight auto`'s bounds: from one
// request at a time, as a CPU-bound Flask handler serves, to a GPU server
// batching internally.
var DefaultAdaptiveInflight = InflightBounds{Min: 1, Max: 64}

// Adaptive reports whether the backends' caps are learned.
func (l *Limits) Adaptive() bool { return l.MaxInflight == 0 && l.AdaptiveInflight.Max > 0 }

// learnedBounds are the bounds a backend's cap is learned between under
// Adaptive: AdaptiveInflight, with its lower bound raised to Batch.Max
// (within its upper one) while batching is on. A replica that takes a
// batch of N in one pass takes N requests in flight; a cap learned below N
// from the response times, which a bigger batch lengthens, would keep the
// batches small, and the replica from the throughput they are for
// (measured: learned caps of 4-5 and batches of about 4, at 64 clients on
// 4 replicas of fakemodel -batch-cost 50ms,5ms).
func (l *Limits) learnedBounds() InflightBounds {
	b := l.AdaptiveInflight
	if l.Batch.Path != "" {
		b.Min = max(b.Min, min(l.Batch.Max, b.Max))
	}
	return b
}

// MostInflight is the most requests one backend may have in flight, for
// budgets sized by it (idle connections, file descriptors): the adaptive
// upper bound, or MaxInflight (0: no cap).
func (l *Limits) MostInflight() int {
	if l.Adaptive() {
		return l.AdaptiveInflight.Max
	}
	return l.MaxInflight
}

// maxClientBuffer is MaxClientBuffer resolved: nil is half of the two
// budgets.
func (l *Limits) maxClientBuffer() int64 {
	if l.MaxClientBuffer == nil {
		return (l.MaxBuffer + l.MaxDiskBuffer) / 2
	}
	return *l.MaxClientBuffer
}

// queueTimeout is QueueTimeout resolved: nil is the UpstreamTimeout value.
func (l *Limits) queueTimeout() time.Duration {
	if l.QueueTimeout == nil {
		return l.UpstreamTimeout
	}
	return *l.QueueTimeout
}
