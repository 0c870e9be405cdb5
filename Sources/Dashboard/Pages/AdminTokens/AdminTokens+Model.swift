struct AdminTokenRow {
    let id: String
    let label: String?
    let created: String
    let lastUsed: String?
    /// The token this session was signed in with.
    let current: Bool
}

struct AdminTokensView {
    let chrome: Chrome
    let flash: Flash?
    let tokens: [AdminTokenRow]
    /// Other tokens exist: the revoke-others form is shown.
    let hasOthers: Bool
}
