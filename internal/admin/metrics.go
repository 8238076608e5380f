package admin

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mattingctl/mattingctl/internal/control"
)

// StatusSource gives the instance's status, read at scrape time.
type StatusSource interface {
	Status() control.Status
}

// Metrics holds what /metrics exports: counters and a histogram the proxy
// feeds as requests finish, restart counters the replicas feed, gauges
// read from the instance's status at scrape time, and the quantiles of
// the last minute's response times (quantiles.go), which the History
// feeds.
type Metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	restarts *prometheus.CounterVec
	live     live          // the dashboard's counts
	recent   recentLatency // the last minute's, which the history adds
	// parent is the instance's, for one service of several: its counts
	// are the dashboard's, of every service.
	parent *Metrics
}

// NewMetrics returns the metrics of the instance whose status src gives.
func NewMetrics(src StatusSource) *Metrics {
	m := newMetrics(prometheus.NewRegistry())
	m.registerProcess(src)
	m.register(m.reg, src, false)
	return m
}

// NewInstanceMetrics returns the metrics of an instance of several
// services without any service's: what the process has once (dropped log
// lines, the Go runtime's and the process's own) and its client
// connections, read from src. Add each service's with Service.
func NewInstanceMetrics(src StatusSource) *Metrics {
	m := newMetrics(prometheus.NewRegistry())
	m.registerProcess(src)
	m.reg.MustRegister(connCollector{src})
	return m
}

// registerProcess puts what the process has once in m's registry, read
// from src: dropped log lines, and mattingctl's own health as every Go
// exporter shows it (go_goroutines, process_resident_memory_bytes,
// process_open_fds).
func (m *Metrics) registerProcess(src StatusSource) {
	m.reg.MustRegister(dropCounters(src)...)
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
}

// Service returns the metrics of one service of m's instance, whose
// status src gives: exported by m's Handler, each series with the label
// service="name".
func (m *Metrics) Service(src StatusSource, name string) *Metrics {
	sm := newMetrics(m.reg)
	sm.parent = m
	sm.register(prometheus.WrapRegistererWith(prometheus.Labels{"service": name}, m.reg), src, true)
	return sm
}

func newMetrics(reg *prometheus.Registry) *Metrics {
	return &Metrics{
		reg: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricRequests,
			Help: "Requests answered, by the replica that answered (empty: none) and the status code (499: the client went away; 408, 504: a response broken off by the send or upstream timeout).",
		}, []string{"replica", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: MetricRequestDuration,
			Help: "Time from a request's arrival to its answer, queueing included.",
			// Model inference: milliseconds to minutes.
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600},
		}, []string{"replica"}),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricRestarts,
			Help: "Replica processes replaced, by reason: crash, rolling restart, memory, max-requests.",
		}, []string{"replica", "reason"}),
	}
}

// register puts m's series and those read from src's status in reg;
// service says that src is one service of several.
func (m *Metrics) register(reg prometheus.Registerer, src StatusSource, service bool) {
	reg.MustRegister(m.requests, m.duration, m.restarts, &statusCollector{src: src, service: service}, &quantileCollector{recent: &m.recent})
}

// Observe records a request answered by replica (empty: none) with code
// after d; it fits balancer.Observer.
func (m *Metrics) Observe(replica string, code int, d time.Duration) {
	m.requests.WithLabelValues(replica, strconv.Itoa(code)).Inc()
	m.duration.WithLabelValues(replica).Observe(d.Seconds())
	m.live.observe(replica, code, d)
	if m.parent != nil {
		m.parent.live.observe(replica, code, d)
	}
}

// Restarted counts a replica process replaced for reason.
func (m *Metrics) Restarted(replica, reason string) {
	if m == nil {
		return
	}
	m.restarts.WithLabelValues(replica, reason).Inc()
}

// Handler serves the metrics as Prometheus text.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// statusCollector turns the instance's status into gauges at scrape time,
// so they are never stale and cost nothing between scrapes.
type statusCollector struct {
	src StatusSource
	// service: src is one service of several, whose series leave out the
	// instance's client connections (connCollector has them).
	service bool
}

// connCollector exports the client connections of an instance of several
// services, which carry requests to any of them: once, with no service.
type connCollector struct{ src StatusSource }

func (c connCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descConns
	ch <- descMaxConns
}

func (c connCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.src.Status()
	ch <- prometheus.MustNewConstMetric(descConns, prometheus.GaugeValue, float64(st.Conns))
	ch <- prometheus.MustNewConstMetric(descMaxConns, prometheus.GaugeValue, float64(st.MaxConns))
}

var (
	descInflight    = prometheus.NewDesc(MetricInflight, "Requests in flight on each replica.", []string{"replica"}, nil)
	descMaxInflight = prometheus.NewDesc(MetricMaxInflight, "Cap on each replica's requests in flight (0: none); under --max-inflight auto, the upper bound of the learned caps.", nil, nil)
	descLimit       = prometheus.NewDesc(MetricReplicaLimit, "Cap on the replica's requests in flight now (0: none): --max-inflight, or under auto the one it has learned.", []string{"replica"}, nil)
	descQueue       = prometheus.NewDesc(MetricQueueLength, "Requests waiting for a replica with room.", nil, nil)
	descRejected    = prometheus.NewDesc(MetricRejected, "Requests answered 503: queue full, queue timeout or no ready replica.", nil, nil)
	descRetried     = prometheus.NewDesc(MetricRetried, "Attempts sent to another replica after one failed to answer.", nil, nil)
	descFailed      = prometheus.NewDesc(MetricFailed, "Requests no replica answered (502, 504).", nil, nil)
	descBrokenOff   = prometheus.NewDesc(MetricBrokenOff, "Responses the proxy broke off mid-way, by cause: send_timeout (the client took nothing for --send-timeout), upstream_timeout (the replica sent nothing for --upstream-timeout).", []string{"cause"}, nil)
	descUp          = prometheus.NewDesc(MetricReplicaUp, "1 when the replica is ready and in rotation.", []string{"replica"}, nil)
	descCPU         = prometheus.NewDesc(MetricReplicaCPU, "Replica CPU use, 100 = one core.", []string{"replica"}, nil)
	descRSS         = prometheus.NewDesc(MetricReplicaRSS, "Resident memory of the replica's processes.", []string{"replica"}, nil)
	descDesired     = prometheus.NewDesc(MetricReplicasDesired, "Replicas the instance should run.", nil, nil)
	descAutoscale   = prometheus.NewDesc(MetricAutoscale, "Under --replicas MIN:MAX, while autoscaling is on: its bounds (min, max) and the count the load asks for (target).", []string{"bound"}, nil)
	descConns       = prometheus.NewDesc(MetricConns, "Client connections the proxy holds open.", nil, nil)
	descQuarantined = prometheus.NewDesc(MetricQuarantined, "Requests quarantined (--quarantine): their deliveries killed or reset replicas twice, each time alone; answered 502.", nil, nil)
	descQuarHits    = prometheus.NewDesc(MetricQuarantineHits, "Requests answered 502 at once because the same request is quarantined.", nil, nil)
	descLimited     = prometheus.NewDesc(MetricClientLimited, "Uploads refused (429) because their client address was over its share (--max-client-uploads, --max-client-buffer), or cut (408) as slower than --min-upload-rate.", nil, nil)
	descBatches     = prometheus.NewDesc(MetricBatches, "Batches sent to the replicas' --batch-endpoint.", nil, nil)
	descBatched     = prometheus.NewDesc(MetricBatchedRequests, "Requests sent to the replicas in batches; over mattingctl_batches_total, the mean batch size.", nil, nil)
	descBatchSplit  = prometheus.NewDesc(MetricBatchesSplit, "Batches a replica answered not as a batch (a status other than 200, not a JSON array of the right length); their requests were sent alone.", nil, nil)
	descMaxConns    = prometheus.NewDesc(MetricMaxConns, "Cap on client connections open at once (--max-conns); past it new ones wait in the listen backlog.", nil, nil)
)

func (c *statusCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descInflight, descMaxInflight, descLimit, descQueue, descRejected, descRetried, descFailed, descBrokenOff, descUp, descCPU, descRSS, descDesired, descAutoscale, descQuarantined, descQuarHits, descLimited, descBatches, descBatched, descBatchSplit} {
		ch <- d
	}
	if !c.service {
		ch <- descConns
		ch <- descMaxConns
	}
}

func (c *statusCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.src.Status()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	gauge(descMaxInflight, float64(st.MaxInflight))
	gauge(descQueue, float64(st.Queued))
	gauge(descDesired, float64(st.Desired))
	if a := st.Autoscale; a != nil && a.On {
		gauge(descAutoscale, float64(a.Min), "min")
		gauge(descAutoscale, float64(a.Max), "max")
		gauge(descAutoscale, float64(a.Target), "target")
	}
	if !c.service { // the instance's connections, not a service's
		gauge(descConns, float64(st.Conns))
		gauge(descMaxConns, float64(st.MaxConns))
	}
	counter(descRejected, st.Rejected)
	counter(descRetried, st.Retried)
	counter(descFailed, st.Failed)
	counter(descQuarantined, st.Quarantined)
	counter(descQuarHits, st.QuarantineHits)
	counter(descLimited, st.ClientLimited)
	counter(descBatches, st.Batches)
	counter(descBatched, st.Batched)
	counter(descBatchSplit, st.BatchesSplit)
	ch <- prometheus.MustNewConstMetric(descBrokenOff, prometheus.CounterValue, float64(st.SendTimeouts), "send_timeout")
	ch <- prometheus.MustNewConstMetric(descBrokenOff, prometheus.CounterValue, float64(st.UpstreamTimeouts), "upstream_timeout")
	for _, r := range st.Replicas {
		up := 0.0
		if r.State == control.Ready {
			up = 1
		}
		gauge(descInflight, float64(r.Inflight), r.Name)
		gauge(descLimit, float64(r.Limit), r.Name)
		gauge(descUp, up, r.Name)
		gauge(descCPU, r.CPUPercent, r.Name)
		gauge(descRSS, float64(r.RSSBytes), r.Name)
	}
}
