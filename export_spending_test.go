package dropboxsign

// WithSpendMark marks a token as being spent since a time, as a replica
// does in the store before presenting its refresh token.
var WithSpendMark = withSpendMark

// SuccessorGrace is how long such a mark keeps the other replicas waiting.
const SuccessorGrace = successorGrace
