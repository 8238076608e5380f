# One mattingctl per allocation, packing 4 replicas of the model server onto
# the allocation's GPU behind mattingctl's proxy; Nomad runs `count` of them
# and registers each with a health check on mattingctl's /readyz.
#
# Image: examples/kubernetes/Dockerfile. Checked by
# cmd/mattingctl/deploy_nomad_test.go: the args must parse as
# `mattingctl up` flags, and ports, checks and timeouts must agree with them.

job "matting" {
  type = "service"

  group "matting" {
    count = 2

    # Dynamic host ports, mapped to the fixed ports mattingctl listens on
    # inside the container, so several allocations can share a node.
    network {
      port "http" {
        to = 9110
      }
      port "admin" {
        to = 9109
      }
    }

    update {
      max_parallel     = 1
      health_check     = "checks"
      min_healthy_time = "10s"
      # Covers --ready-timeout (5m) for the first replica.
      healthy_deadline  = "10m"
      progress_deadline = "15m"
      auto_revert       = true
    }

    task "mattingctl" {
      driver = "docker"

      # mattingctl treats SIGTERM and SIGINT (Nomad's default) the same: /readyz
      # turns 503 and the proxy keeps serving for --drain-delay, then in-flight
      # requests and replicas get --stop-timeout. kill_timeout must exceed
      # 10s + 30s. The client's max_kill_timeout (default 30s) caps it: set
      # max_kill_timeout = "60s" or more in the client configuration.
      # Nomad deregisters the services before signalling, so shutdown_delay
      # is not needed on top of --drain-delay.
      kill_signal  = "SIGTERM"
      kill_timeout = "60s"

      config {
        image = "registry.example.com/matting:0.1.0"
        ports = ["http", "admin"]
        # Replaces the image's CMD; the entrypoint is /usr/local/bin/mattingctl.
        # The allocation sees only its own GPU, as device 0. CPU-only: drop
        # "--gpus", "0" and the device block.
        args = [
          "up",
          "--replicas", "4",
          "--host", "0.0.0.0",
          "--port", "9110",
          "--admin", "0.0.0.0:9109",
          "--health", "/health",
          "--ready-timeout", "5m",
          "--min-ready", "1",
          "--start-concurrency", "1",
          "--drain-delay", "10s",
          "--stop-timeout", "30s",
          "--max-memory", "1792MiB",
          "--gpus", "0",
          "--log-format", "json",
          "--",
          "/usr/local/bin/matting-server",
        ]
      }

      env {
        MATTINGCTL_HOME = "/tmp/mattingctl"
      }

      resources {
        cpu    = 4000
        memory = 8192

        # Needs the Nomad NVIDIA device plugin on the client and the NVIDIA
        # container runtime for Docker.
        device "nvidia/gpu" {
          count = 1
        }
      }

      # Traffic: the proxy, in the catalog only while /readyz is 200.
      # provider = "nomad" needs Nomad 1.4 or later; use "consul" with Consul.
      service {
        name     = "matting"
        provider = "nomad"
        port     = "http"

        check {
          name     = "readyz"
          type     = "http"
          port     = "admin"
          path     = "/readyz"
          interval = "5s"
          timeout  = "2s"
        }
      }

      # Metrics and liveness: scrape /metrics from this service's address.
      # /livez fails only if the supervisor loop is stuck; a crashed replica
      # is mattingctl's to restart. check_restart's grace covers the model load.
      service {
        name     = "matting-admin"
        provider = "nomad"
        port     = "admin"
        tags     = ["metrics"]

        check {
          name     = "livez"
          type     = "http"
          port     = "admin"
          path     = "/livez"
          interval = "10s"
          timeout  = "5s"

          check_restart {
            limit = 3
            grace = "6m"
          }
        }
      }
    }
  }
}
