package control

// How a changed setting was applied (Change.Applied).
const (
	// AppliedLive: in force at once, for the requests that arrive from
	// now on (the proxy's settings), or at the next use (the
	// supervisor's timeouts).
	AppliedLive = "live"
	// AppliedRolling: every replica was given a new process, one at a
	// time, as `mattingctl restart` does.
	AppliedRolling = "rolling restart"
	// AppliedScale: the replica count was changed, as `mattingctl scale`
	// does.
	AppliedScale = "scale"
)

// Change is one setting that a reload or set changed.
type Change struct {
	// Setting is up's flag name (max-inflight), or command.
	Setting string `json:"setting"`
	// Old and New are the values before and after, as up's flag takes
	// them; for command, the command lines.
	Old string `json:"old"`
	New string `json:"new"`
	// Applied says how it was applied: AppliedLive, AppliedRolling or
	// AppliedScale.
	Applied string `json:"applied"`
}

// ReloadResult is the outcome of a reload or a set.
type ReloadResult struct {
	Name string `json:"name"`
	// File is the config file that a reload read again; empty for a set.
	File string `json:"file,omitempty"`
	// Changes lists every setting changed, in up's flag order; empty
	// when the configuration was the same.
	Changes []Change `json:"changes"`
	// Scale is the scale that a changed replica count made, if any.
	Scale *ScaleResult `json:"scale,omitempty"`
	// Restart is the rolling restart that changed replica settings made,
	// if any; its Error says where it stopped, if it did (the new
	// settings are in force all the same, for every process started from
	// then on).
	Restart *RestartResult `json:"restart,omitempty"`
}

// setRequest is the body of POST /v1/set: settings as FLAG=VALUE, with
// up's flag names.
type setRequest struct {
	Settings []string `json:"settings"`
}
