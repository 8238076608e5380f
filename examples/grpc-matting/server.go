package main

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	_ "image/jpeg" // register the decoder for image.Decode
	"image/png"
	"os"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mattingctl/mattingctl/examples/grpc-matting/mattingpb"
	"github.com/mattingctl/mattingctl/examples/matte"
)

// maxSide is the largest accepted image width or height, in pixels, as
// matting-server's.
const maxSide = 4096

// server implements mattingpb.MattingServer.
type server struct {
	mattingpb.UnimplementedMattingServer
	// workers bounds the calls matted at once, each held an extra delay
	// to model a slower model.
	workers *matte.Workers
	// name, port and pid identify this server in every reply.
	name      string
	port, pid int32
}

func newServer(workers int, delay time.Duration, name string, port int) *server {
	return &server{workers: matte.NewWorkers(workers, delay), name: name, port: int32(port), pid: int32(os.Getpid())}
}

// Matte mattes req's image onto its background colour.
func (s *server) Matte(ctx context.Context, req *mattingpb.MatteRequest) (*mattingpb.MatteReply, error) {
	bg := color.RGBA{255, 255, 255, 255}
	if c := req.GetBg(); c != nil {
		if c.R > 255 || c.G > 255 || c.B > 255 {
			return nil, status.Errorf(codes.InvalidArgument, "bg (%d, %d, %d) has a channel over 255", c.R, c.G, c.B)
		}
		bg = color.RGBA{uint8(c.R), uint8(c.G), uint8(c.B), 255}
	}
	cfg, format, err := image.DecodeConfig(bytes.NewReader(req.GetImage()))
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "image is not a decodable PNG or JPEG: %v", err)
	}
	if cfg.Width > maxSide || cfg.Height > maxSide {
		return nil, status.Errorf(codes.InvalidArgument, "image is %dx%d; at most %dx%d is accepted", cfg.Width, cfg.Height, maxSide, maxSide)
	}
	if err := s.workers.Acquire(ctx); err != nil {
		return nil, status.FromContextError(err).Err()
	}
	defer s.workers.Release()
	img, _, err := image.Decode(bytes.NewReader(req.GetImage()))
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "image is not a decodable %s: %v", format, err)
	}
	var buf bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.BestSpeed}
	if err := enc.Encode(&buf, matte.Matte(img, bg)); err != nil {
		return nil, status.Error(codes.Internal, fmt.Sprintf("encoding the result: %v", err))
	}
	return &mattingpb.MatteReply{Png: buf.Bytes(), Replica: s.name, Port: s.port, Pid: s.pid}, nil
}
