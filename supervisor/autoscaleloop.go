package supervisor

import "time"

// autoscaleTick is how often the autoscaling loop reads the proxy's load.
const autoscaleTick = 500 * time.Millisecond
