//! The dictionary values of the enumerated attributes sessions use
//! (RFC 2866, RFC 2865, RFC 2869 and FreeRADIUS's dictionary). `rlm_rest`
//! sends them by name (`"Acct-Status-Type":{"type":"integer","value":["Start"]}`),
//! or by number with `raw_value = yes`; `radacct` stores names, as
//! `rlm_sql` writes them. A number without a name is kept as its decimal
//! text, as FreeRADIUS prints it.

/// One attribute's values: `(number, name)`.
pub struct Table(pub &'static [(i64, &'static str)]);

impl Table {
    /// The dictionary name of `n`, or `n` in decimal.
    pub fn name_of(&self, n: i64) -> String {
        self.0
            .iter()
            .find(|(v, _)| *v == n)
            .map_or_else(|| n.to_string(), |(_, name)| (*name).to_owned())
    }

    /// The dictionary spelling of a name given in any case, or of a number
    /// given as text.
    pub fn canonical(&self, text: &str) -> Option<String> {
        if let Ok(n) = text.trim().parse::<i64>() {
            return Some(self.name_of(n));
        }
        self.0
            .iter()
            .find(|(_, name)| name.eq_ignore_ascii_case(text))
            .map(|(_, name)| (*name).to_owned())
    }
}

/// `Acct-Status-Type` by name or number.
pub fn status_type(text: &str) -> Option<super::StatusType> {
    use super::StatusType::*;
    let text = text.trim();
    let by_number = match text.parse::<i64>() {
        Ok(1) => Some(Start),
        Ok(2) => Some(Stop),
        Ok(3) => Some(InterimUpdate),
        Ok(7) => Some(AccountingOn),
        Ok(8) => Some(AccountingOff),
        Ok(_) => return None,
        Err(_) => None,
    };
    by_number.or_else(|| {
        [
            ("Start", Start),
            ("Stop", Stop),
            ("Interim-Update", InterimUpdate),
            ("Alive", InterimUpdate),
            ("Accounting-On", AccountingOn),
            ("Accounting-Off", AccountingOff),
        ]
        .into_iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(text))
        .map(|(_, s)| s)
    })
}

/// `NAS-Port-Type` (RFC 2865, 2869, 4603, 7155).
pub static NAS_PORT_TYPE: Table = Table(&[
    (0, "Async"),
    (1, "Sync"),
    (2, "ISDN"),
    (3, "ISDN-V120"),
    (4, "ISDN-V110"),
    (5, "Virtual"),
    (6, "PIAFS"),
    (7, "HDLC-Clear-Channel"),
    (8, "X.25"),
    (9, "X.75"),
    (10, "G.3-Fax"),
    (11, "SDSL"),
    (12, "ADSL-CAP"),
    (13, "ADSL-DMT"),
    (14, "IDSL"),
    (15, "Ethernet"),
    (16, "xDSL"),
    (17, "Cable"),
    (18, "Wireless-Other"),
    (19, "Wireless-802.11"),
    (20, "Token-Ring"),
    (21, "FDDI"),
    (22, "Wireless-CDMA2000"),
    (23, "Wireless-UMTS"),
    (24, "Wireless-1X-EV"),
    (25, "IAPP"),
    (26, "FTTP"),
    (27, "Wireless-802.16"),
    (28, "Wireless-802.20"),
    (29, "Wireless-802.22"),
    (30, "PPPoA"),
    (31, "PPPoEoA"),
    (32, "PPPoEoE"),
    (33, "PPPoEoVLAN"),
    (34, "PPPoEoQinQ"),
    (35, "xPON"),
    (36, "Wireless-XGP"),
    (37, "WiMAX-Pre-Release-8"),
]);

/// `Service-Type` (RFC 2865, 2869, 3576).
pub static SERVICE_TYPE: Table = Table(&[
    (1, "Login-User"),
    (2, "Framed-User"),
    (3, "Callback-Login-User"),
    (4, "Callback-Framed-User"),
    (5, "Outbound-User"),
    (6, "Administrative-User"),
    (7, "NAS-Prompt-User"),
    (8, "Authenticate-Only"),
    (9, "Callback-NAS-Prompt"),
    (10, "Call-Check"),
    (11, "Callback-Administrative"),
    (12, "Voice"),
    (13, "Fax"),
    (14, "Modem-Relay"),
    (15, "IAPP-Register"),
    (16, "IAPP-AP-Check"),
    (17, "Authorize-Only"),
    (18, "Framed-Management"),
]);

/// `Acct-Authentic` (RFC 2866).
pub static ACCT_AUTHENTIC: Table =
    Table(&[(1, "RADIUS"), (2, "Local"), (3, "Remote"), (4, "Diameter")]);

/// `Acct-Terminate-Cause` (RFC 2866, 3580).
pub static TERMINATE_CAUSE: Table = Table(&[
    (1, "User-Request"),
    (2, "Lost-Carrier"),
    (3, "Lost-Service"),
    (4, "Idle-Timeout"),
    (5, "Session-Timeout"),
    (6, "Admin-Reset"),
    (7, "Admin-Reboot"),
    (8, "Port-Error"),
    (9, "NAS-Error"),
    (10, "NAS-Request"),
    (11, "NAS-Reboot"),
    (12, "Port-Unneeded"),
    (13, "Port-Preempted"),
    (14, "Port-Suspended"),
    (15, "Service-Unavailable"),
    (16, "Callback"),
    (17, "User-Error"),
    (18, "Host-Request"),
    (19, "Supplicant-Restart"),
    (20, "Reauthentication-Failure"),
    (21, "Port-Reinitialized"),
    (22, "Port-Administratively-Disabled"),
]);

/// `Framed-Protocol` (RFC 2865).
pub static FRAMED_PROTOCOL: Table = Table(&[
    (1, "PPP"),
    (2, "SLIP"),
    (3, "ARAP"),
    (4, "Gandalf-SLML"),
    (5, "Xylogics-IPX-SLIP"),
    (6, "X.75-Synchronous"),
    (7, "GPRS-PDP-Context"),
]);
