package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/patchfleet/patchfleet/events/query"
)

// maxInFlight bounds the NATS requests answered at once; micro delivers an endpoint's
// requests one at a time, so each is answered on its own goroutine.
const maxInFlight = 32

// Serve registers the micro service "inventory" on nc and answers until ctx ends. Access is
// governed by NATS permissions on the query subjects; the requests and answers are the HTTP
// API's, byte for byte.
func (a *API) Serve(ctx context.Context, nc *nats.Conn) error {
	svc, err := micro.AddService(nc, micro.Config{Name: query.ServiceInventory, Version: "1.0.0",
		Description: "Patchfleet inventory: hosts, packages, exposure, scans"})
	if err != nil {
		return fmt.Errorf("add micro service %s: %w", query.ServiceInventory, err)
	}
	sem := make(chan struct{}, maxInFlight)
	endpoint := func(name, subject string, answer func(context.Context, []byte) (any, error)) error {
		h := micro.HandlerFunc(func(r micro.Request) {
			sem <- struct{}{}
			go func() {
				defer func() { <-sem }()
				rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), requestTimeout)
				defer cancel()
				resp, err := answer(rctx, r.Data())
				if err != nil {
					e := a.answer(name, err)
					body, _ := json.Marshal(e)
					_ = query.Answer(nc, r, nil, e.Code, e.Message, body)
					return
				}
				_ = query.Answer(nc, r, resp, 0, "", nil)
			}()
		})
		if err := svc.AddEndpoint(name, h, micro.WithEndpointSubject(subject)); err != nil {
			return fmt.Errorf("add endpoint %s: %w", subject, err)
		}
		return nil
	}
	for _, e := range []struct {
		name, subject string
		answer        func(context.Context, []byte) (any, error)
	}{
		{"hosts", query.SubjectHosts, handle(a.Hosts)},
		{"host", query.SubjectHost, handle(a.Host)},
		{"exposure", query.SubjectExposure, handle(a.Exposure)},
		{"scan", query.SubjectScan, handle(a.Scan)},
	} {
		if err := endpoint(e.name, e.subject, e.answer); err != nil {
			_ = svc.Stop()
			return err
		}
	}
	<-ctx.Done()
	// Stop drains the endpoints' subscriptions; answers in flight still go out.
	if err := svc.Stop(); err != nil {
		return fmt.Errorf("stop micro service: %w", err)
	}
	for range maxInFlight {
		sem <- struct{}{}
	}
	return nil
}

func handle[Req, Resp any](f func(context.Context, Req) (Resp, error)) func(context.Context, []byte) (any, error) {
	return func(ctx context.Context, data []byte) (any, error) {
		var req Req
		if len(data) > 0 {
			if err := json.Unmarshal(data, &req); err != nil {
				return nil, &Error{Code: http.StatusBadRequest, Message: "request: " + err.Error()}
			}
		}
		return f(ctx, req)
	}
}
