//! The TSBS `cpu` tag vocabulary and the per-host draw of tag values.

use rand::RngExt;
use rand_pcg::Pcg64Mcg;

/// Tag column names of the `cpu` table, in TSBS (and schema) order.
pub const TAG_NAMES: [&str; 10] = [
    "hostname",
    "region",
    "datacenter",
    "rack",
    "os",
    "arch",
    "team",
    "service",
    "service_version",
    "service_environment",
];

/// Cloud regions and the datacenters within each.
const REGIONS: [(&str, &[&str]); 9] = [
    (
        "us-east-1",
        &["us-east-1a", "us-east-1b", "us-east-1c", "us-east-1e"],
    ),
    ("us-west-1", &["us-west-1a", "us-west-1b"]),
    ("us-west-2", &["us-west-2a", "us-west-2b", "us-west-2c"]),
    ("eu-west-1", &["eu-west-1a", "eu-west-1b", "eu-west-1c"]),
    ("eu-central-1", &["eu-central-1a", "eu-central-1b"]),
    ("ap-southeast-1", &["ap-southeast-1a", "ap-southeast-1b"]),
    ("ap-southeast-2", &["ap-southeast-2a", "ap-southeast-2b"]),
    ("ap-northeast-1", &["ap-northeast-1a", "ap-northeast-1c"]),
    ("sa-east-1", &["sa-east-1a", "sa-east-1b", "sa-east-1c"]),
];
const OS: [&str; 3] = ["Ubuntu16.10", "Ubuntu16.04LTS", "Ubuntu15.10"];
const ARCH: [&str; 2] = ["x64", "x86"];
const TEAM: [&str; 4] = ["SF", "NYC", "LON", "CHI"];
const SERVICE_ENVIRONMENT: [&str; 3] = ["production", "staging", "test"];

/// The ten tag values of one host, in [`TAG_NAMES`] order.
pub(crate) type HostTags = [String; 10];

fn pick<'a>(rng: &mut Pcg64Mcg, choices: &[&'a str]) -> &'a str {
    choices[rng.random_range(0..choices.len())]
}

/// Draws host `index`'s tags in TSBS's draw order: region, datacenter, rack, arch, os,
/// service, service_version, service_environment, team.
pub(crate) fn draw_host_tags(index: usize, rng: &mut Pcg64Mcg) -> HostTags {
    let (region, datacenters) = REGIONS[rng.random_range(0..REGIONS.len())];
    let datacenter = pick(rng, datacenters);
    let rack = rng.random_range(0..100u32).to_string();
    let arch = pick(rng, &ARCH);
    let os = pick(rng, &OS);
    let service = rng.random_range(0..20u32).to_string();
    let service_version = rng.random_range(0..2u32).to_string();
    let service_environment = pick(rng, &SERVICE_ENVIRONMENT);
    let team = pick(rng, &TEAM);
    [
        format!("host_{index}"),
        region.to_string(),
        datacenter.to_string(),
        rack,
        os.to_string(),
        arch.to_string(),
        team.to_string(),
        service,
        service_version,
        service_environment.to_string(),
    ]
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn tag_values_come_from_the_tsbs_vocabulary() {
        let mut rng = Pcg64Mcg::seed_from_u64(1);
        for i in 0..500 {
            let tags = draw_host_tags(i, &mut rng);
            assert_eq!(tags[0], format!("host_{i}"));
            let (_, dcs) = REGIONS.iter().find(|(r, _)| *r == tags[1]).unwrap();
            assert!(dcs.contains(&tags[2].as_str()));
            assert!(tags[3].parse::<u32>().unwrap() < 100);
            assert!(OS.contains(&tags[4].as_str()));
            assert!(ARCH.contains(&tags[5].as_str()));
            assert!(TEAM.contains(&tags[6].as_str()));
            assert!(tags[7].parse::<u32>().unwrap() < 20);
            assert!(["0", "1"].contains(&tags[8].as_str()));
            assert!(SERVICE_ENVIRONMENT.contains(&tags[9].as_str()));
        }
    }
}
