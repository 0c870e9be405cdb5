import Foundation
import KeybrakeCore
import Mustache

struct CredentialField {
    let name: String
    let text: String
    let inputType: String
    let placeholder: String
}

struct StoredCredential {
    let fingerprint: String
    let accountSid: String?
    let updated: String
}

struct VendorView {
    let name: String
    let title: String
    let stored: StoredCredential?
    let fields: [CredentialField]
    let action: String
    let deleteHref: String
}

struct VendorsView {
    let chrome: Chrome
    let flash: Flash?
    let vendors: [VendorView]
}

struct VendorDeleteView {
    let chrome: Chrome
    let flash: Flash? = nil
    let title: String
    let fingerprint: String
    let confirm: ConfirmForm
}
