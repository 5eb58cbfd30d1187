//! The retailer's network: locations, groups and channels, and which group serves a country.

use engine::{ChannelId, Command, Coordinates, GroupId, LocationDef, LocationId, LocationKind};

/// Index of a location in [`LOCATIONS`].
pub type Loc = u8;

/// The UK warehouse (index in [`LOCATIONS`]).
pub const UK_WAREHOUSE: Loc = 0;
/// The EU warehouse.
pub const EU_WAREHOUSE: Loc = 1;
/// The stores: indices `FIRST_STORE..LOCATIONS.len()`.
pub const FIRST_STORE: Loc = 2;
/// Number of locations.
pub const LOCATION_COUNT: usize = 6;

/// One location of the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Site {
    /// Location id.
    pub id: &'static str,
    /// Warehouse or store.
    pub kind: LocationKind,
    /// Latitude, micro-degrees.
    pub lat_e6: i32,
    /// Longitude, micro-degrees.
    pub lon_e6: i32,
}

/// Every location, in definition order (= sourcing order of `all`).
pub const LOCATIONS: [Site; LOCATION_COUNT] = [
    // North London (Enfield): the retailer is London-based.
    Site {
        id: "uk-wh",
        kind: LocationKind::Warehouse,
        lat_e6: 51_652_000,
        lon_e6: -81_000,
    },
    // Venlo, Netherlands: a typical EU fulfilment hub.
    Site {
        id: "eu-wh",
        kind: LocationKind::Warehouse,
        lat_e6: 51_370_000,
        lon_e6: 6_172_000,
    },
    Site {
        id: "store-london",
        kind: LocationKind::Store,
        lat_e6: 51_511_700,
        lon_e6: -124_000,
    },
    Site {
        id: "store-manchester",
        kind: LocationKind::Store,
        lat_e6: 53_480_800,
        lon_e6: -2_242_600,
    },
    Site {
        id: "store-birmingham",
        kind: LocationKind::Store,
        lat_e6: 52_479_700,
        lon_e6: -1_898_300,
    },
    Site {
        id: "store-edinburgh",
        kind: LocationKind::Store,
        lat_e6: 55_953_300,
        lon_e6: -3_188_300,
    },
];

/// The web shop's channel.
pub const CHANNEL_WEB: &str = "web";
/// The trade (wholesale) channel: big invoices keyed in by the sales team.
pub const CHANNEL_B2B: &str = "b2b";
/// Counter sales (unused by the replay; stores allow it).
pub const CHANNEL_POS: &str = "pos";

/// A sourcing group, by the customers it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum Region {
    /// United Kingdom and Channel Islands: `online-uk` = UK warehouse, then the stores
    /// (ship-from-store when the warehouse is out).
    Uk,
    /// Continental Europe and Ireland: `online-eu` = EU warehouse, then the UK warehouse.
    Eu,
    /// Everywhere else (and `Unspecified`): `online-intl` = the UK warehouse (exports).
    Intl,
}

impl Region {
    /// Every region, in group definition order.
    pub const ALL: [Region; 3] = [Region::Uk, Region::Eu, Region::Intl];

    /// The group's id.
    pub fn group(self) -> &'static str {
        match self {
            Region::Uk => "online-uk",
            Region::Eu => "online-eu",
            Region::Intl => "online-intl",
        }
    }

    /// The group's locations, in sourcing order.
    pub fn locations(self) -> &'static [Loc] {
        match self {
            Region::Uk => &[UK_WAREHOUSE, 2, 3, 4, 5],
            Region::Eu => &[EU_WAREHOUSE, UK_WAREHOUSE],
            Region::Intl => &[UK_WAREHOUSE],
        }
    }

    /// The warehouse whose replenishment this region's demand drives.
    pub fn home_warehouse(self) -> Loc {
        match self {
            Region::Eu => EU_WAREHOUSE,
            Region::Uk | Region::Intl => UK_WAREHOUSE,
        }
    }
}

/// Countries served from the EU warehouse (as spelled in the data).
const EU_COUNTRIES: [&str; 22] = [
    "Austria",
    "Belgium",
    "Cyprus",
    "Czech Republic",
    "Denmark",
    "EIRE",
    "European Community",
    "Finland",
    "France",
    "Germany",
    "Greece",
    "Iceland",
    "Italy",
    "Lithuania",
    "Malta",
    "Netherlands",
    "Norway",
    "Poland",
    "Portugal",
    "Spain",
    "Sweden",
    "Switzerland",
];

/// The region (so the group) serving a customer's country.
pub fn region_of(country: &str) -> Region {
    match country {
        "United Kingdom" | "Channel Islands" => Region::Uk,
        c if EU_COUNTRIES.contains(&c) => Region::Eu,
        _ => Region::Intl,
    }
}

/// The location id of an index.
pub fn location_id(loc: Loc) -> LocationId {
    LocationId::from(LOCATIONS[loc as usize].id)
}

/// The index of a location id.
pub fn location_index(id: &str) -> Option<Loc> {
    LOCATIONS.iter().position(|s| s.id == id).map(|i| i as Loc)
}

/// The commands that define the network: every location, then every group.
///
/// Warehouses sell to `web` and `b2b`; stores to `pos` and `web` only, so trade orders never
/// empty a shop floor. Stores offer pickup; warehouses do not.
pub fn setup_commands() -> Vec<Command> {
    let mut out = Vec::new();
    for site in LOCATIONS {
        let store = site.kind == LocationKind::Store;
        let channels = if store {
            vec![CHANNEL_POS, CHANNEL_WEB]
        } else {
            vec![CHANNEL_WEB, CHANNEL_B2B]
        };
        out.push(Command::DefineLocation(LocationDef {
            location: LocationId::from(site.id),
            kind: site.kind,
            pickup: store,
            coordinates: Some(Coordinates {
                lat_e6: site.lat_e6,
                lon_e6: site.lon_e6,
            }),
            channels: Some(channels.into_iter().map(ChannelId::from).collect()),
        }));
    }
    for region in Region::ALL {
        out.push(Command::DefineGroup {
            group: GroupId::from(region.group()),
            locations: region.locations().iter().map(|&l| location_id(l)).collect(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn countries_map_to_regions() {
        assert_eq!(region_of("United Kingdom"), Region::Uk);
        assert_eq!(region_of("Channel Islands"), Region::Uk);
        assert_eq!(region_of("EIRE"), Region::Eu);
        assert_eq!(region_of("Germany"), Region::Eu);
        assert_eq!(region_of("Switzerland"), Region::Eu);
        assert_eq!(region_of("USA"), Region::Intl);
        assert_eq!(region_of("Unspecified"), Region::Intl);
        assert_eq!(region_of(""), Region::Intl);
    }

    #[test]
    fn the_network_defines_cleanly() {
        let mut ledger = engine::Ledger::default();
        let requests: Vec<engine::Request> = setup_commands()
            .into_iter()
            .enumerate()
            .map(|(i, command)| engine::Request {
                request_id: engine::RequestId(i as u128 + 1),
                command,
            })
            .collect();
        let outcomes = ledger.apply(
            engine::BatchHeader {
                log_index: 1,
                timestamp_ms: 1,
            },
            &requests,
        );
        assert!(outcomes.iter().all(|o| o.is_ok()), "{outcomes:?}");
        assert_eq!(location_index("store-edinburgh"), Some(5));
        assert_eq!(location_index("nowhere"), None);
        assert_eq!(LOCATIONS[FIRST_STORE as usize].kind, LocationKind::Store);
    }
}
