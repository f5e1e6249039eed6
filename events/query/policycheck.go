package query

import "context"

// SubjectPlannerPolicyCheck validates a policy file without loading it (the planner serves
// it; `patchfleet policy check` asks it).
const SubjectPlannerPolicyCheck = "pf.query.planner.policy-check"

// PolicyCheckRequest carries a policy file's content and its name (for messages).
type PolicyCheckRequest struct {
	Name    string `json:"name,omitempty"`
	Content string `json:"content"`
}

// PolicyCheckResponse is the parsed policy (defaults filled in) or what is wrong with it,
// one problem per entry, each naming its line.
type PolicyCheckResponse struct {
	Valid    bool          `json:"valid"`
	Problems []string      `json:"problems,omitempty"`
	Fleets   []FleetPolicy `json:"fleets,omitempty"`
}

// PolicyCheck validates a policy file.
func (c Client) PolicyCheck(ctx context.Context, req PolicyCheckRequest) (PolicyCheckResponse, error) {
	var out PolicyCheckResponse
	return out, c.call(ctx, SubjectPlannerPolicyCheck, req, &out)
}
