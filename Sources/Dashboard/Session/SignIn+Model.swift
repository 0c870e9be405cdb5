import Foundation
import KeybrakeCore
import Mustache

struct LoginView {
    let chrome: Chrome? = nil
    let flash: Flash?
    let loginCsrf: String
}
