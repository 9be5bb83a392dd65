package rsp_test

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/rsp-go/rsp"
)

// TestGRPCFailover serves gRPC on three pooled listeners and keeps calling
// while one server dies: gRPC re-dials through rsp and reaches a live one.
func TestGRPCFailover(t *testing.T) {
	r, regs := testRegistrar(t)
	type server struct {
		pooled *pooled
		g      *grpc.Server
	}
	var servers []server
	for range 3 {
		p := startPooled(t, regs, "grpc")
		g := grpc.NewServer()
		healthpb.RegisterHealthServer(g, health.NewServer())
		go g.Serve(p.l)
		t.Cleanup(g.Stop)
		servers = append(servers, server{p, g})
	}
	waitFor(t, "three gRPC servers", 2*time.Second, func() bool { return poolSize(r, "grpc") == 3 })

	d := &rsp.Dialer{Endpoint: newEndpoint(t, regs), Timeout: time.Second}
	cc, err := grpc.NewClient("passthrough:///pool:grpc",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		// gRPC retries what its rules allow: here a health check that met
		// a dying connection.
		grpc.WithDefaultServiceConfig(`{"methodConfig": [{"name": [{}], "retryPolicy": {
			"MaxAttempts": 3, "InitialBackoff": "0.01s", "MaxBackoff": "0.1s",
			"BackoffMultiplier": 2, "RetryableStatusCodes": ["UNAVAILABLE"]}}]}`),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return d.DialContext(ctx, "tcp", addr)
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	client := healthpb.NewHealthClient(cc)
	check := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := client.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
		return err
	}
	if err := check(); err != nil {
		t.Fatal(err)
	}
	// Kill every server but one, one after the other; calls keep working.
	for _, s := range servers[:2] {
		s.pooled.crash()
		s.g.Stop()
		for range 5 {
			if err := check(); err != nil {
				t.Fatalf("call after a server died: %v", err)
			}
		}
	}
	waitFor(t, "dead servers to leave the pool", 2*time.Second, func() bool { return poolSize(r, "grpc") == 1 })
}
