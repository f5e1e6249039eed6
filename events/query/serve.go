package query

import (
	"encoding/json"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

// Answer replies to a micro request from a goroutine of the service's own: with resp as
// JSON, or, when code is not 0, with a micro error (code, message and body, as Client
// reads it). It publishes to the request's reply subject itself instead of calling
// r.RespondJSON or r.Error: micro reads a Request once its handler returns (for the
// endpoint's statistics), and a response written after that races with the read. Errors
// answered this way are not counted in micro's statistics.
func Answer(nc *nats.Conn, r micro.Request, resp any, code int, message string, body []byte) error {
	msg := &nats.Msg{Subject: r.Reply()}
	if code != 0 {
		msg.Header = nats.Header{micro.ErrorHeader: {message}, micro.ErrorCodeHeader: {strconv.Itoa(code)}}
		msg.Data = body
	} else {
		data, err := json.Marshal(resp)
		if err != nil {
			return err
		}
		msg.Data = data
	}
	return nc.PublishMsg(msg)
}
