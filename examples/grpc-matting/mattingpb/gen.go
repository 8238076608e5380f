// Package mattingpb is the generated Go code of matting.proto. Regenerate
// it, from this directory, with protoc (Debian: protobuf-compiler) and
// the two plugins on PATH:
//
//	go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
//	go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
//	go generate
package mattingpb

//go:generate protoc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative matting.proto
