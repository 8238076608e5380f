package main

import (
	"cmp"
	"path"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsimple"
)

const nomadJob = "../../examples/nomad/matting.nomad.hcl"

// The types below hold the part of a Nomad job file the test reads. Each
// keeps the rest in Remain, so the decoder neither rejects the job
// specification's other attributes and blocks nor evaluates them. What is
// decoded is evaluated without variables or functions, so it must be literal.

type nomadFile struct {
	Jobs   []nomadJobBlock `hcl:"job,block"`
	Remain hcl.Body        `hcl:",remain"`
}

type nomadJobBlock struct {
	Name   string       `hcl:"name,label"`
	Update *nomadUpdate `hcl:"update,block"`
	Groups []nomadGroup `hcl:"group,block"`
	Remain hcl.Body     `hcl:",remain"`
}

type nomadGroup struct {
	Name     string         `hcl:"name,label"`
	Update   *nomadUpdate   `hcl:"update,block"`
	Networks []nomadNetwork `hcl:"network,block"`
	Services []nomadService `hcl:"service,block"`
	Tasks    []nomadTask    `hcl:"task,block"`
	Remain   hcl.Body       `hcl:",remain"`
}

type nomadUpdate struct {
	MinHealthyTime  string   `hcl:"min_healthy_time,optional"`
	HealthyDeadline string   `hcl:"healthy_deadline,optional"`
	Remain          hcl.Body `hcl:",remain"`
}

type nomadNetwork struct {
	Ports []struct {
		Label  string   `hcl:"label,label"`
		To     int      `hcl:"to,optional"`
		Remain hcl.Body `hcl:",remain"`
	} `hcl:"port,block"`
	Remain hcl.Body `hcl:",remain"`
}

type nomadTask struct {
	Name        string         `hcl:"name,label"`
	Driver      string         `hcl:"driver"`
	KillSignal  string         `hcl:"kill_signal,optional"`
	KillTimeout string         `hcl:"kill_timeout,optional"`
	Config      *nomadConfig   `hcl:"config,block"`
	Services    []nomadService `hcl:"service,block"`
	Remain      hcl.Body       `hcl:",remain"`
}

type nomadConfig struct {
	Command string   `hcl:"command,optional"`
	Args    []string `hcl:"args,optional"`
	Remain  hcl.Body `hcl:",remain"`
}

type nomadService struct {
	Name         string        `hcl:"name,optional"`
	Port         string        `hcl:"port,optional"`
	Checks       []nomadCheck  `hcl:"check,block"`
	CheckRestart *nomadRestart `hcl:"check_restart,block"`
	Remain       hcl.Body      `hcl:",remain"`
}

type nomadCheck struct {
	Name         string        `hcl:"name,optional"`
	Type         string        `hcl:"type,optional"`
	Port         string        `hcl:"port,optional"`
	Path         string        `hcl:"path,optional"`
	CheckRestart *nomadRestart `hcl:"check_restart,block"`
	Remain       hcl.Body      `hcl:",remain"`
}

type nomadRestart struct {
	Grace  string   `hcl:"grace,optional"`
	Remain hcl.Body `hcl:",remain"`
}

func TestDeployExamplesNomad(t *testing.T) {
	var f nomadFile
	if err := hclsimple.DecodeFile(nomadJob, nil, &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Jobs) != 1 {
		t.Fatalf("%s: want one job, found %d", nomadJob, len(f.Jobs))
	}
	job := f.Jobs[0]

	// Nomad merges a group's update block over the job's; checking each on
	// its own, with Nomad's defaults, is stricter than the merge.
	var updates []*nomadUpdate
	if job.Update != nil {
		updates = append(updates, job.Update)
	}
	// Services may sit on the group or on the task.
	var tasks []nomadTask
	var services []nomadService
	to := map[string]int{} // port label -> the port mattingctl listens on in the container
	for _, g := range job.Groups {
		if g.Update != nil {
			updates = append(updates, g.Update)
		}
		for _, n := range g.Networks {
			for _, p := range n.Ports {
				if p.To > 0 {
					to[p.Label] = p.To
				}
			}
		}
		services = append(services, g.Services...)
		for _, task := range g.Tasks {
			tasks = append(tasks, task)
			services = append(services, task.Services...)
		}
	}
	if len(tasks) != 1 {
		t.Fatalf("%s: want one task (mattingctl), found %d", nomadJob, len(tasks))
	}
	task := tasks[0]

	if task.Config == nil || task.Config.Args == nil {
		t.Fatalf("%s: no args = [...] in the task", nomadJob)
	}
	if task.Driver != "docker" {
		// exec or raw_exec: the command is mattingctl, the args follow it.
		if path.Base(task.Config.Command) != "mattingctl" {
			t.Fatalf("%s: the %s task's config has no command running mattingctl", nomadJob, task.Driver)
		}
	}
	o, err := parseUp(task.Config.Args)
	if err != nil {
		t.Fatalf("%s: %v", nomadJob, err)
	}
	admin := checkContainerFlags(t, nomadJob, o)

	duration := func(what, v string, def time.Duration) time.Duration {
		if v == "" {
			return def
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("%s: %s %q: %v", nomadJob, what, v, err)
		}
		return d
	}

	if sig := task.KillSignal; sig != "" && sig != "SIGTERM" && sig != "SIGINT" {
		t.Errorf("%s: kill_signal %s; mattingctl stops gracefully on SIGTERM or SIGINT", nomadJob, sig)
	}
	killTimeout := duration("kill_timeout", task.KillTimeout, 5*time.Second) // Nomad's default
	if stop := o.DrainDelay + o.StopTimeout; killTimeout <= stop {
		t.Errorf("%s: kill_timeout %s is not more than --drain-delay %s + --stop-timeout %s: SIGKILL would cut the stop short",
			nomadJob, killTimeout, o.DrainDelay, o.StopTimeout)
	}

	// Nomad must wait for the model load: a deployment fails unless the
	// checks pass for min_healthy_time (default 10s) within
	// healthy_deadline (default 5m), and check_restart restarts the task if
	// its check fails after grace (default 1s).
	atLeast := func(what string, got, need time.Duration) {
		if got < need {
			t.Errorf("%s: %s %s is less than the %s mattingctl may need (--ready-timeout %s, --min-ready %d, --start-concurrency %d)",
				nomadJob, what, got, need, o.ReadyTimeout, o.MinReady, o.StartConcurrency)
		}
	}
	for _, u := range updates {
		atLeast("update healthy_deadline", duration("update.healthy_deadline", u.HealthyDeadline, 5*time.Minute),
			startupBudget(o)+duration("update.min_healthy_time", u.MinHealthyTime, 10*time.Second))
	}
	// A service's check_restart applies to all its checks.
	var restarts []*nomadRestart
	for _, svc := range services {
		restarts = append(restarts, svc.CheckRestart)
		for _, chk := range svc.Checks {
			restarts = append(restarts, chk.CheckRestart)
		}
	}
	for _, r := range restarts {
		if r != nil {
			atLeast("check_restart grace", duration("check_restart.grace", r.Grace, time.Second), startupBudget(o))
		}
	}

	if len(to) == 0 {
		t.Fatalf(`%s: no port "label" { to = N } in the network block`, nomadJob)
	}
	var proxyService, adminService, readyCheck bool
	for _, svc := range services {
		if _, ok := to[svc.Port]; !ok {
			t.Errorf("%s: service %q: port %q is not a network port label", nomadJob, svc.Name, svc.Port)
		}
		if to[svc.Port] == admin {
			adminService = true
		}
		if len(svc.Checks) == 0 {
			t.Errorf("%s: service %q has no check", nomadJob, svc.Name)
		}
		for _, chk := range svc.Checks {
			if chk.Type != "http" {
				t.Errorf("%s: check %q: type %q, want http", nomadJob, chk.Name, chk.Type)
			}
			label := cmp.Or(chk.Port, svc.Port)
			if to[label] != admin {
				t.Errorf("%s: check %q uses port %q (to = %d); the --admin port is %d", nomadJob, chk.Name, label, to[label], admin)
			}
			switch chk.Path {
			case "/readyz":
				readyCheck = true
				if to[svc.Port] == o.Port {
					proxyService = true
				}
			case "/livez":
			default:
				t.Errorf("%s: check %q path %q, want /readyz or /livez", nomadJob, chk.Name, chk.Path)
			}
		}
	}
	if !readyCheck {
		t.Errorf("%s: no service check on /readyz", nomadJob)
	}
	if !proxyService {
		t.Errorf("%s: no service on the proxy port (to = %d) checked on /readyz", nomadJob, o.Port)
	}
	if !adminService {
		t.Errorf("%s: no service on the admin port (to = %d) to scrape /metrics from", nomadJob, admin)
	}
}
