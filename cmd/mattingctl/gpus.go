package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
)

var gpuLine = regexp.MustCompile(`^GPU (\d+):`)

// parseGPUs reads --gpus: a comma-separated list of device ids ("0,1,2,3",
// or UUIDs as CUDA_VISIBLE_DEVICES takes them), or "all" for every GPU
// `nvidia-smi -L` lists.
func parseGPUs(s string) ([]string, error) {
	if strings.TrimSpace(s) == "all" {
		out, err := exec.Command("nvidia-smi", "-L").Output()
		if err != nil {
			return nil, fmt.Errorf("--gpus all: cannot list GPUs with nvidia-smi -L: %v", err)
		}
		gpus := gpusFromSMI(out)
		if len(gpus) == 0 {
			return nil, errors.New("--gpus all: nvidia-smi -L lists no GPU")
		}
		return gpus, nil
	}
	var gpus []string
	for _, g := range strings.Split(s, ",") {
		g = strings.TrimSpace(g)
		if g == "" || strings.ContainsAny(g, " \t=") {
			return nil, fmt.Errorf("--gpus %q: want device ids separated by commas (0,1,2,3) or all", s)
		}
		gpus = append(gpus, g)
	}
	return gpus, nil
}

// gpusFromSMI reads the device indexes from `nvidia-smi -L` output:
// "GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-...)".
func gpusFromSMI(out []byte) []string {
	var gpus []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if m := gpuLine.FindStringSubmatch(strings.TrimSpace(sc.Text())); m != nil {
			gpus = append(gpus, m[1])
		}
	}
	return gpus
}

// splitGPUs shares the GPUs of gpus (--gpus at the top of a file of
// services) out among services, which took it from the top, by weights
// (their most replicas as the file gives them), each getting at least
// one; with fewer GPUs than services, they share them, round robin.
func splitGPUs(gpus string, services []*upOptions, weights []int) error {
	if len(services) < 2 {
		return nil
	}
	list, err := parseGPUs(gpus)
	if err != nil {
		return err
	}
	for i, share := range shareOut(len(list), weights) {
		services[i].GPUs = strings.Join(list[share.from:share.from+share.n], ",")
	}
	return nil
}
